"""One-GPU check of the real benchmark in one command of at most 9 minutes: five parts in priority order.

    python benchmarks/gpu_check.py [--dry-run] [--only PART[,PART]] [--records DIR] [--runs N] [--budget-s S]
                                   [--log FILE]

Made for a lent node with one NVIDIA GPU, no network and 15 minutes in all, of which one command may use 10.
It needs only this checkout, torch, pytest and the record scripts in a folder (`--records`, default
`benchmarks/records/`, which git ignores: the scripts are CC-BY-NC and never committed). Before the parts it
imports the scripts into its cache (`pytest-speedrun fetch records --from DIR`). The parts, each with a cap
(the caps sum to the default budget, `--budget-s` 540 s):

1. doctor (30 s): `pytest-speedrun doctor --smoke --nproc 1` for the tasks of part 2;
2. smoke (240 s): one smoke run per feature era, newest era first: the newest one-GPU record (record 19, FP8
   matmul, with the compat fix the harness applies to it), then the first FlexAttention and early
   (AdamW/Muon) one-GPU records; 20 steps on generated shards (`--speedrun-smoke --speedrun-nproc=1`);
3. timing (90 s): the newest record whose smoke passed in part 2, up to `--runs` times under the harness and as
   often as bare `torchrun --standalone --nproc_per_node=1` (the harness's own shortened copy of the script,
   the same shards, env contract and compile cache), alternating: each side's train_time CV and the ratio.
   A record whose run crashes hands over to the next older one and is never timed again; without part 2 in
   the session, the first harness run of each record is its smoke;
4. tiny-gpu (60 s): the tiny suite's last (cheapest) task on the GPU, `--speedrun-gpus=0`, oracle;
5. quiet-host (120 s): the tiny quickstart on the host's CPU, one timed run at a time (`--speedrun-threads=1`,
   no `-n`): oracle, then baseline, then one oracle row with 4 threads per run. It covers the last task, or
   every tiny task (cap 480 s) when `--only` leaves other parts out.

A part's cap is reserved for it: a part may use the budget left less the caps of the parts after it (its cap,
plus what earlier parts left unused) and is stopped when that is spent. It starts only when that is at least
half its cap; one that does not fit is listed as `did-not-fit`, in the log and the summary. `--only
PART[,PART]` runs just those parts (in a later session). Every pytest run gets
`--speedrun-python=<this interpreter>`: a lent machine cannot build runtimes, so every part runs on the host's
torch, with the compat fixes the harness has, and the log says so at the top.

Everything goes to one log (default `benchmarks/gpu_check.last.log`) and a JSON summary beside it
(`gpu_check.last.json`: per part its status, seconds, cap, figures, items, crash reasons and compat fixes),
rewritten after every part. The log never holds a line of a record script: every line that occurs in a
pinned script of the suite (stripped, `[rankN]: ` prefixes and digits aside) is left out, since the records
print their own code and tracebacks quote it. A crash's reason is the first exception line of its log,
`[rankN]: ` prefix or not. `--dry-run` prints the parts, their caps, commands and total, and runs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # usable from a checkout that was never pip-installed

from pytest_speedrun.execution.doctor import FLEX, FP8, features  # noqa: E402
from pytest_speedrun.execution.resources import Lease, discover_gpus  # noqa: E402
from pytest_speedrun.execution.runner import contract_env  # noqa: E402
from pytest_speedrun.judging.metrics import parse_log  # noqa: E402
from pytest_speedrun.judging.status import CRASHED, NO_RESULT, PASSED, SKIPPED  # noqa: E402
from pytest_speedrun.pipeline.item import SCRIPT_NAME  # noqa: E402
from pytest_speedrun.pipeline.smoke import SMOKE_STEPS, shorten, smoke_dataset, smoke_task  # noqa: E402
from pytest_speedrun.results.store import read_records  # noqa: E402
from pytest_speedrun.tasks.fetch import cached_path, resolve_task, script_refs  # noqa: E402
from pytest_speedrun.tasks.manifest import Task, find_suite, load_suite  # noqa: E402

EARLY = "early (AdamW/Muon)"
# The parts, in priority order.
DOCTOR, SMOKE, TIMING, TINY_GPU, QUIET_HOST = "doctor", "smoke", "timing", "tiny-gpu", "quiet-host"
# A part's outcome: this check's own words (an item's status is the harness's, judging/status.py).
RAN, FAILED, DID_NOT_FIT = "ran", "failed", "did-not-fit"  # and PASSED, SKIPPED
STOPPED = "stopped"  # a run the part's cap stopped before it wrote a result
BUDGET_S = 540.0  # a lent machine's command may run 10 minutes; the machine's start takes up to 2
MIN_SHARE = 0.5  # a part starts only while this share of its cap is left
MIN_RUN_S = 20.0  # no run starts with less of its part's cap left than this
KILL_GRACE_S = 10.0  # SIGTERM, then SIGKILL after this (pytest stops its runs on SIGTERM)
THREADS_ROW = 4  # the quiet-host part's row with more threads per run
GOALS = {"oracle": (0.85, 1.15), "baseline": (-0.15, 0.15)}  # the quiet-host goal per agent (issue 20)
# An exception line of a traceback ("KeyError: 'RANK'"); torchrun's own ChildFailedError report is not the cause.
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)(:|$)")
# What torchrun (and --tee) put before a worker's lines, and pytest before a failure's.
_PREFIX = re.compile(r"^(\[(rank|default)\d+\]:|E\s)\s*")


@dataclass(frozen=True)
class Part:
    name: str
    cap_s: float
    what: str
    alone_cap_s: float | None = None  # its cap when --only leaves other parts out


PARTS = (
    Part(DOCTOR, 30, "torch, CUDA, the GPU, FlexAttention, FP8 matmul and the record scripts, for part 2's tasks"),
    Part(SMOKE, 240, "one smoke run per feature era, newest first (FP8 with the harness's compat fix)"),
    Part(TIMING, 90, "harness against bare torchrun on the newest record whose smoke passed: CV and ratio"),
    Part(TINY_GPU, 60, "the tiny suite's cheapest task on the GPU (--speedrun-gpus=0), oracle"),
    Part(QUIET_HOST, 120, "the tiny quickstart on the host's CPU, one timed run at a time: oracle, baseline, and "
         f"an oracle row at {THREADS_ROW} threads", alone_cap_s=480),
)
PART_NAMES = tuple(p.name for p in PARTS)


def era(task: Task, cache: Path) -> str:
    used = features(task, cache, smoke=True)
    return FP8 if FP8 in used else FLEX if FLEX in used else EARLY


def torch_version() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "not installed"


# --- the plan ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    suite: str
    tiny_suite: str
    smoke_tasks: tuple[Task, ...]  # one per era, newest record first
    quiet_tasks: tuple[str, ...]  # the quiet-host part's tiny tasks
    tiny_gpu_task: str
    parts: tuple[Part, ...]  # the selected parts, in order, with the caps they get
    left_out: tuple[str, ...]  # parts --only leaves out
    cache: Path
    records: Path
    log: Path
    runs: int
    budget_s: float

    @property
    def summary_json(self) -> Path:
        return self.log.with_suffix(".json")

    @property
    def work(self) -> Path:
        return self.cache / "gpu-check"

    def store(self, part: str) -> Path:
        return self.work / "results" / part

    @property
    def needs_records(self) -> bool:
        return any(p.name in (DOCTOR, SMOKE, TIMING) for p in self.parts)


def parse_only(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in PART_NAMES]
    if unknown or not names:
        raise SystemExit(f"gpu_check: --only {text}: unknown part {', '.join(unknown) or '(none named)'}; "
                         f"choose from {', '.join(PART_NAMES)}")
    return names


def select_parts(only: tuple[str, ...] | None) -> tuple[tuple[Part, ...], tuple[str, ...]]:
    """The parts to run (a part alone gets its wider cap when --only leaves others out) and those left out."""
    if only is None or set(only) == set(PART_NAMES):
        return PARTS, ()
    chosen = tuple(replace(p, cap_s=p.alone_cap_s or p.cap_s) for p in PARTS if p.name in only)
    return chosen, tuple(n for n in PART_NAMES if n not in only)


def smoke_set(tasks: list[Task], cache: Path) -> list[Task]:
    """The newest one-GPU task, and the first one-GPU task of every other era; newest record first."""
    one_gpu = [t for t in tasks if 1 in t.launch.supported_gpu_counts]
    if not one_gpu:
        raise SystemExit("gpu_check: the suite has no task that runs on one GPU")
    newest = one_gpu[-1]
    first: dict[str, Task] = {era(newest, cache): newest}
    for task in one_gpu:
        first.setdefault(era(task, cache), task)
    return sorted(first.values(), key=lambda t: t.start.record, reverse=True)


def make_plan(args: argparse.Namespace) -> Plan:
    cache = Path(args.cache_dir).resolve()
    tiny = [t.id for t in load_suite(find_suite(args.tiny_suite))]
    parts, left_out = select_parts(parse_only(args.only))
    wide = bool(left_out) and any(p.name == QUIET_HOST for p in parts)
    return Plan(args.suite, args.tiny_suite, tuple(smoke_set(load_suite(find_suite(args.suite)), cache)),
                tuple(tiny if wide else tiny[-1:]), tiny[-1], parts, left_out, cache,
                Path(args.records).resolve(), Path(args.log).resolve(), args.runs, args.budget_s)


# --- commands ----------------------------------------------------------------------------------------------

def _installed() -> bool:
    try:
        metadata.distribution("pytest-speedrun")
        return True
    except metadata.PackageNotFoundError:
        return False


def child_env(**changes: str) -> dict[str, str]:
    env = dict(os.environ)
    if not _installed():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(changes)
    return env


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest_speedrun.cli", *args]


def pytest_cmd(plan: Plan, part: str, suite: str, tasks: list[str], *options: str) -> list[str]:
    """A pytest session of `tasks` on this interpreter, its results in the part's own store."""
    plugin = [] if _installed() else ["-p", "pytest_speedrun.plugin"]  # the entry point registers it otherwise
    return [sys.executable, "-m", "pytest", *plugin, "-p", "no:cacheprovider", f"--rootdir={plan.work}", "-q",
            "-rA", f"--speedrun-suite={suite}", f"--speedrun-python={sys.executable}",
            f"--speedrun-cache-dir={plan.cache}", f"--speedrun-results={plan.store(part)}", *options,
            "-k", " or ".join(tasks)]


def smoke_cmd(plan: Plan, part: str, task: Task) -> list[str]:
    return pytest_cmd(plan, part, plan.suite, [task.id], "--speedrun-smoke", "--speedrun-nproc=1")


def tiny_gpu_cmd(plan: Plan) -> list[str]:
    return pytest_cmd(plan, TINY_GPU, plan.tiny_suite, [plan.tiny_gpu_task], "--speedrun-agent=oracle",
                      "--speedrun-gpus=0")


def quiet_sessions(plan: Plan) -> list[tuple[str, int, list[str]]]:
    """(agent, threads per run, tasks) of the quiet-host part's sessions, in order."""
    return [("oracle", 1, list(plan.quiet_tasks)), ("baseline", 1, list(plan.quiet_tasks)),
            ("oracle", THREADS_ROW, [plan.tiny_gpu_task])]


def quiet_cmd(plan: Plan, agent: str, threads: int, tasks: list[str]) -> list[str]:
    return pytest_cmd(plan, QUIET_HOST, plan.tiny_suite, tasks, f"--speedrun-agent={agent}",
                      f"--speedrun-threads={threads}")


QUIET_ENV = {"CUDA_VISIBLE_DEVICES": ""}  # the host's CPU: no GPU is visible to the quiet-host runs


def bare_cmd(script: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", str(script)]


def import_cmd(plan: Plan) -> list[str]:
    return cli_cmd("fetch", "records", "--from", str(plan.records), "--suite", plan.suite,
                   "--cache-dir", str(plan.cache))


def doctor_cmd(plan: Plan, cap_s: float) -> list[str]:
    return cli_cmd("doctor", "--suite", plan.suite, "--smoke", "--nproc", "1", "-k",
                   ",".join(t.id for t in plan.smoke_tasks), "--cache-dir", str(plan.cache), "--python",
                   sys.executable, "--probe-timeout", f"{max(5.0, cap_s - 5):.0f}")


def interpreter_line() -> str:
    return (f"interpreter: {sys.executable} (Python {sys.version.split()[0]}, torch {torch_version()}) for every "
            "part (--speedrun-python): a lent machine cannot build runtimes, so the records run on this torch "
            "with the compat fixes the harness applies")


def task_label(task: Task, cache: Path) -> str:
    return f"{task.id} (record {task.start.record}, {era(task, cache)})"


def print_plan(plan: Plan) -> None:
    total = sum(p.cap_s for p in plan.parts)
    lines = ["gpu_check plan (dry run: nothing runs)", interpreter_line(),
             f"log: {plan.log}; JSON summary: {plan.summary_json}", f"cache: {plan.cache}"]
    if plan.needs_records:
        lines += [f"first: import the record scripts ({'found' if plan.records.is_dir() else 'MISSING'}: "
                  f"{plan.records})", f"   $ {shlex.join(import_cmd(plan))}"]
    lines.append("parts, in priority order (each may use its cap plus what earlier parts left unused, and starts "
                 "only when half its cap is left for it):")
    for k, part in enumerate(plan.parts, start=1):
        lines.append(f"{k}. {part.name:<11} cap {part.cap_s:>4.0f} s  {part.what}")
        lines += [f"   {line}" for line in part_commands(plan, part)]
    lines.append(f"total: {total:.0f} s of caps ({total / 60:.1f} min); budget {plan.budget_s:.0f} s"
                 + ("" if total <= plan.budget_s else ": the last parts get what is left, or do not fit"))
    if plan.left_out:
        lines.append(f"left out by --only: {', '.join(plan.left_out)}")
    print("\n".join(lines))


def part_commands(plan: Plan, part: Part) -> list[str]:
    c = plan.cache
    if part.name == DOCTOR:
        return [f"$ {shlex.join(doctor_cmd(plan, part.cap_s))}"]
    if part.name == SMOKE:
        return [f"{task_label(t, c)}: $ {shlex.join(smoke_cmd(plan, SMOKE, t))}" for t in plan.smoke_tasks]
    if part.name == TIMING:
        bare = plan.work / "bare-N" / SCRIPT_NAME
        newest = ", else ".join(t.id for t in plan.smoke_tasks)
        return [f"the newest record whose smoke passed ({newest}): {plan.runs} x (harness, bare), alternating, "
                f"{SMOKE_STEPS} steps each",
                f"harness: $ {shlex.join(smoke_cmd(plan, TIMING, plan.smoke_tasks[0]))}",
                f"bare:    $ {shlex.join(bare_cmd(bare))}",
                "         (the harness's shortened copy, its smoke shards, NANOGPT_* contract, CUDA_VISIBLE_DEVICES "
                "and compile caches)"]
    if part.name == TINY_GPU:
        return [f"$ {shlex.join(tiny_gpu_cmd(plan))}"]
    return [f"$ CUDA_VISIBLE_DEVICES= {shlex.join(quiet_cmd(plan, *s))}" for s in quiet_sessions(plan)]


# --- the log -----------------------------------------------------------------------------------------------

def _key(line: str) -> str | None:
    """A line as the source filter compares it: no torchrun/pytest prefix, digits and spacing normalised (a
    shortened script's iteration count still matches); None for a line with no letter or digit."""
    text = _PREFIX.sub("", line.strip(), count=1).strip()
    if not any(ch.isalnum() for ch in text):
        return None
    return re.sub(r"\s+", " ", re.sub(r"\d+", "0", text))


class SourceFilter:
    """The lines of the record scripts the check uses; a log line that is one of them is left out."""

    def __init__(self) -> None:
        self.lines: set[str] = set()
        self.dropped = 0

    def add(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        self.lines.update(k for k in map(_key, text.splitlines()) if k)

    def is_source(self, line: str) -> bool:
        key = _key(line)
        return key is not None and key in self.lines

    def keep(self, line: str) -> bool:
        """False for a line of record source (and it is counted)."""
        if self.is_source(line):
            self.dropped += 1
            return False
        return True

    def scrub(self, text: str) -> str:
        return text if self.keep(text) else "(a line of the record's source, left out)"


def pinned_scripts(suite: str, cache: Path) -> list[Path]:
    return [cached_path(cache, ref) for ref in script_refs(load_suite(find_suite(suite)))]


class Log:
    """Everything printed goes to the terminal and to the one log file, less the lines of record source."""

    def __init__(self, path: Path, source: SourceFilter) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.source = source
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - kept open for the whole check
        self.lock = threading.Lock()

    def __call__(self, text: str = "") -> None:
        for line in text.split("\n"):
            self.line(line)

    def line(self, line: str) -> None:
        if not self.source.keep(line):
            return
        with self.lock:
            print(line, flush=True)
            self.file.write(line + "\n")
            self.file.flush()

    def run(self, cmd: list[str], *, cwd: Path, timeout_s: float, env: dict[str, str] | None = None,
            copy_to: Path | None = None) -> tuple[int | None, float]:
        """Run `cmd` in its own session, its output into the log (and, whole, into `copy_to`); (exit code or
        None when stopped at the timeout, wall seconds)."""
        self(f"$ {shlex.join(cmd)}")
        cwd.mkdir(parents=True, exist_ok=True)
        dropped = self.source.dropped
        start = time.perf_counter()
        copy = open(copy_to, "w", encoding="utf-8") if copy_to else None  # noqa: SIM115
        proc = subprocess.Popen(cmd, cwd=cwd, env=env or child_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, errors="replace",
                                start_new_session=True)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if copy:
                    copy.write(line)
                self.line(line.rstrip("\n"))
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code: int | None = proc.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            code = None
            for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=grace)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
        reader.join(timeout=10)
        if copy:
            copy.close()
        wall = time.perf_counter() - start
        left_out = self.source.dropped - dropped
        self(f"# exit {code if code is not None else 'stopped at the cap'} after {wall:.1f} s"
             + (f"; {left_out} line(s) of record source left out of this log" if left_out else ""))
        return code, wall


# --- reading results ---------------------------------------------------------------------------------------

def crash_reason(text: str, source: SourceFilter | None = None) -> str:
    """The first exception line of a run's output (the cause, not torchrun's report of it), with or without a
    `[rankN]: ` prefix; else its last line that is not decoration (rows of `=`, blank lines). Lines of record
    source (`source`) are never the reason."""
    lines = [_PREFIX.sub("", ln.strip(), count=1).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if any(ch.isalnum() for ch in ln) and not (source and source.is_source(ln))]
    causes = [ln for ln in lines if _EXCEPTION.match(ln) and "ChildFailedError" not in ln]
    return (causes[0] if causes else lines[-1] if lines else "")[:200]


def first_error(log_path: str | None, source: SourceFilter | None = None) -> str:
    if not log_path or not Path(log_path).exists():
        return ""
    return crash_reason(Path(log_path).read_text(errors="replace"), source)


def new_records(store: Path, before: int) -> list[dict]:
    return read_records(store, missing_ok=True)[before:]


def item_row(record: dict, source: SourceFilter) -> dict[str, Any]:
    """What the summary keeps of a result record; fields other helpers add (runtime, python, torch, compat)
    are read where present."""
    row: dict[str, Any] = {k: record.get(k) for k in ("task", "agent", "status", "wall_s", "train_time_ms", "fsr",
                                                      "fsr_low", "fsr_high", "reference_state", "runtime",
                                                      "python", "torch")}
    row["compat"] = list(record.get("compat") or [])
    for key in ("disturbed", "note"):
        if record.get(key):
            row[key] = record[key]
    if record.get("status") != PASSED:
        reasons = "; ".join(r for r in record.get("reasons", []) if not r.startswith("smoke:"))
        row["reason"] = source.scrub(first_error(record.get("log_path"), source) or reasons[:200])
    return row


def describe(row: dict[str, Any]) -> str:
    figures = []
    if row.get("fsr") is not None:
        low, high = row.get("fsr_low"), row.get("fsr_high")
        interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
        figures.append(f"FSR {row['fsr']:.2f}{interval}")
    elif row.get("train_time_ms") is not None:
        figures.append(f"train_time {row['train_time_ms']:.0f} ms")
    if row.get("wall_s") is not None:
        figures.append(f"wall {row['wall_s']:.1f} s")
    if "goal" in row:
        figures.append(f"goal {row['goal']}")
    if row.get("compat"):
        figures.append("compat: " + ", ".join(row["compat"]))
    if row.get("runtime"):
        figures.append(f"runtime: {row['runtime']}")
    if row.get("disturbed"):
        figures.append(f"disturbed: {row['disturbed']}")
    if row.get("reason"):
        figures.append(row["reason"])
    threads = f" {row['threads']} thread(s)" if "threads" in row else ""
    return f"  {row.get('task', '?'):<8} {row.get('agent', ''):<9}{threads} {row.get('status', '?'):<9} " + \
        "; ".join(figures)


# --- parts -------------------------------------------------------------------------------------------------

@dataclass
class PartReport:
    name: str
    cap_s: float
    status: str = SKIPPED
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 1)}


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


@dataclass
class Context:
    plan: Plan
    log: Log
    reports: dict[str, PartReport]
    known_crashes: dict[str, str]  # task id -> reason, from the last check on this interpreter and torch


def session(ctx: Context, part: str, cmd: list[str], deadline: Deadline, env: dict[str, str] | None = None
            ) -> list[dict] | None:
    """One pytest session within the part's cap; its new result records (None when no time was left). A
    session that wrote none says why in a stand-in row: stopped at the cap, or pytest's exit code."""
    if deadline.left() < MIN_RUN_S:
        return None
    store = ctx.plan.store(part)
    before = len(read_records(store, missing_ok=True))
    code, _ = ctx.log.run(cmd, cwd=ctx.plan.work, timeout_s=deadline.left(), env=env)
    got = new_records(store, before)
    if got:
        return got
    why = "stopped at the part's cap" if code is None else f"pytest exited {code} without a result (see the log)"
    return [{"task": cmd[-1], "agent": "", "status": STOPPED if code is None else NO_RESULT, "reasons": [why]}]


def run_doctor(ctx: Context, report: PartReport, deadline: Deadline) -> None:
    out = ctx.plan.work / "doctor.out"
    code, _ = ctx.log.run(doctor_cmd(ctx.plan, report.cap_s), cwd=ctx.plan.work, timeout_s=deadline.left(),
                          copy_to=out)
    text = out.read_text(encoding="utf-8", errors="replace") if out.exists() else ""
    fails = [m.group(1) for m in re.finditer(r"^(\S(?:.*?\S)?)\s{2,}FAIL\s", text, re.MULTILINE)]
    verdict = [ln for ln in text.splitlines() if ln.startswith("suite ")]
    report.figures = {"exit": code, "failed_rows": fails, "verdict": verdict[-1] if verdict else ""}
    report.status = PASSED if code == 0 else FAILED
    if code is None:
        report.reasons.append("stopped at its cap")
    report.reasons += [f"doctor FAIL: {name}" for name in fails]


def run_smoke(ctx: Context, report: PartReport, deadline: Deadline) -> None:
    for task in ctx.plan.smoke_tasks:
        got = session(ctx, SMOKE, smoke_cmd(ctx.plan, SMOKE, task), deadline)
        if got is None:
            report.reasons.append(f"{task.id} not run: its part's cap was reached")
            continue
        for record in got:
            row = item_row(record, ctx.log.source)
            row.update(record=task.start.record, era=era(task, ctx.plan.cache))
            report.items.append(row)
        add_run_scripts(ctx, got)
    ran = [r for r in report.items if r.get("status") == PASSED]
    report.figures = {"passed": [r["task"] for r in ran], "of": len(ctx.plan.smoke_tasks)}
    finish_items(report, len(ctx.plan.smoke_tasks))


def add_run_scripts(ctx: Context, records: list[dict]) -> None:
    """The scripts the harness ran (shortened copies, with any compat fix) join the source filter."""
    for record in records:
        if record.get("artifact_dir"):
            ctx.log.source.add(Path(record["artifact_dir"]) / "smoke" / SCRIPT_NAME)


@dataclass
class Timed:
    task: Task | None = None
    harness: list[dict] = field(default_factory=list)
    bare: list[dict] = field(default_factory=list)
    handed_over: list[dict] = field(default_factory=list)  # records whose runs crashed, newest first
    stopped: str = ""


def time_records(candidates: list[Task], runs: int, harness: Callable[[Task], dict | None],
                 bare: Callable[[Task, dict, int], dict | None], deadline: Deadline, log: Log) -> Timed:
    """Pairs of (harness, bare) runs of the first candidate that runs; a candidate whose run fails hands over
    to the next one and is not run again. A pair starts only while the part's cap has room for it."""
    out = Timed()
    for task in candidates:
        out.task, out.harness, out.bare = task, [], []
        pair_s, failed = 0.0, None
        for k in range(1, runs + 1):
            if deadline.left() < max(MIN_RUN_S, pair_s):
                out.stopped = f"stopped after {k - 1} pair(s): the part's cap was reached"
                return out
            t0 = time.perf_counter()
            h = harness(task)
            if h is None:
                out.stopped = "the harness run was stopped at the part's cap"
                return out
            if h.get("status") != PASSED:
                failed = ("harness", h)
                break
            out.harness.append(h)
            b = bare(task, h, k) if deadline.left() >= MIN_RUN_S else None
            if b is None:
                out.stopped = "no time left for the bare run"
                return out
            if b.get("status") != PASSED:
                failed = ("bare", b)
                break
            out.bare.append(b)
            pair_s = time.perf_counter() - t0
        if failed is None:
            return out
        side, run = failed
        out.handed_over.append({"task": task.id, "record": task.start.record, "side": side,
                                "status": run.get("status"), "reason": run.get("reason", "")})
        log(f"# {task.id} (record {task.start.record}): the {side} run {run.get('status')}: {run.get('reason', '')}; "
            "handing over to the next older record, and not timing this one again")
    out.task, out.harness, out.bare = None, [], []
    return out


def timing_candidates(ctx: Context) -> tuple[list[Task], str]:
    smoke = ctx.reports.get(SMOKE)
    if smoke is not None and smoke.status != SKIPPED and smoke.status != DID_NOT_FIT:
        passed = {r["task"] for r in smoke.items if r.get("status") == PASSED}
        return [t for t in ctx.plan.smoke_tasks if t.id in passed], "its smoke passed in part 2"
    tasks = [t for t in ctx.plan.smoke_tasks if t.id not in ctx.known_crashes]
    for t in ctx.plan.smoke_tasks:
        if t.id in ctx.known_crashes:
            ctx.log(f"# {t.id}: not tried, it crashed in the last check on this interpreter and torch "
                    f"({ctx.known_crashes[t.id]})")
    return tasks, "no smoke part ran in this session: its first harness run served as its smoke"


def harness_run(ctx: Context, deadline: Deadline) -> Callable[[Task], dict | None]:
    def run(task: Task) -> dict | None:
        got = session(ctx, TIMING, smoke_cmd(ctx.plan, TIMING, task), deadline)
        if not got or got[-1]["status"] == STOPPED:
            return None
        add_run_scripts(ctx, got)
        row = item_row(got[-1], ctx.log.source)
        row["artifact_dir"] = got[-1].get("artifact_dir")
        return row
    return run


def bare_script(plan: Plan, task: Task, harness: dict, work: Path) -> Path:
    """The script the harness ran (shortened, with any compat fix), else the pinned one shortened here."""
    ran = Path(harness.get("artifact_dir") or "/nonexistent") / "smoke" / SCRIPT_NAME
    script = work / SCRIPT_NAME
    if ran.is_file():
        script.write_text(ran.read_text(encoding="utf-8"), encoding="utf-8")
    else:
        resolved = resolve_task(task, plan.cache)
        assert resolved.start.script.path is not None
        script.write_text(shorten(resolved.start.script.path.read_text(encoding="utf-8")), encoding="utf-8")
    return script


def bare_run(ctx: Context, deadline: Deadline) -> Callable[[Task, dict, int], dict | None]:
    def run(task: Task, harness: dict, k: int) -> dict | None:
        plan = ctx.plan
        dataset = smoke_dataset(plan.cache, task.dataset)
        smoked = smoke_task(task, dataset)
        work = plan.work / f"bare-{k}"
        work.mkdir(parents=True, exist_ok=True)
        script = bare_script(plan, task, harness, work)
        ctx.log.source.add(script)
        env = child_env()
        env.update(contract_env(train_glob=dataset.train_glob, val_glob=dataset.val_glob,
                                val_tokens=dataset.val_tokens, task_env=smoked.launch.env, seed=0, threads=None,
                                base={}))
        env.update(Lease(gpus=tuple(discover_gpus()[:1]), cores=()).env(plan.cache / "compile"))
        code, wall = ctx.log.run(bare_cmd(script), cwd=work, env=env, timeout_s=deadline.left(),
                                 copy_to=work / "run.log")
        if code is None:
            return None
        wall = round(wall, 2)
        if code != 0:
            return {"status": CRASHED, "wall_s": wall,
                    "reason": first_error(str(work / "run.log"), ctx.log.source)}
        try:
            metrics = parse_log(work / "run.log", script)
        except Exception as exc:  # a log without a final line is a result to report, not a crash of the check
            return {"status": NO_RESULT, "wall_s": wall, "reason": str(exc)[:160]}
        return {"status": PASSED, "wall_s": wall, "train_time_ms": metrics.train_time_ms}
    return run


def _spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    mean = statistics.fmean(values)
    cv = 100 * statistics.stdev(values) / mean if len(values) > 1 else None
    return {"n": len(values), "mean_ms": round(mean, 1), "cv_percent": None if cv is None else round(cv, 2),
            "runs_ms": [round(v, 1) for v in values]}


def run_timing(ctx: Context, report: PartReport, deadline: Deadline) -> None:
    candidates, why = timing_candidates(ctx)
    if not candidates:
        report.status = SKIPPED
        report.reasons.append("no record to time: none passed its smoke")
        return
    timed = time_records(candidates, ctx.plan.runs, harness_run(ctx, deadline), bare_run(ctx, deadline), deadline,
                         ctx.log)
    h = [r["train_time_ms"] for r in timed.harness if r.get("train_time_ms") is not None]
    b = [r["train_time_ms"] for r in timed.bare if r.get("train_time_ms") is not None]
    report.figures = {"record": timed.task.start.record if timed.task else None,
                      "task": timed.task.id if timed.task else None, "chosen_because": why,
                      "harness": _spread(h), "bare": _spread(b), "handed_over_from": timed.handed_over}
    report.items = [dict(r, side="harness") for r in timed.harness] + [dict(r, side="bare") for r in timed.bare]
    for row in report.items:
        row.pop("artifact_dir", None)
    if h and b:
        report.figures["ratio"] = round(statistics.fmean(h) / statistics.fmean(b), 4)
        report.figures["mean_wall_s"] = {side: round(statistics.fmean(r["wall_s"] for r in runs), 1)
                                         for side, runs in (("harness", timed.harness), ("bare", timed.bare))}
    report.reasons += [f"{x['task']} (record {x['record']}) {x['side']} run {x['status']}: {x['reason']}"
                       for x in timed.handed_over]
    if timed.stopped:
        report.reasons.append(timed.stopped)
    if timed.task is None:
        report.status = FAILED
        report.reasons.append("every candidate record crashed")
    else:
        has_cv = len(h) > 1 and len(b) > 1
        report.status = PASSED if has_cv and not timed.handed_over else RAN if h and b else FAILED


def tiny_rows(ctx: Context, records: list[dict], threads: int | None) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        row = item_row(record, ctx.log.source)
        if threads is not None:
            row["threads"] = threads
        goal = GOALS.get(row.get("agent") or "")
        if goal and row.get("fsr") is not None and threads is not None:
            row["goal"] = f"[{goal[0]}, {goal[1]}]: " + ("met" if goal[0] <= row["fsr"] <= goal[1] else "missed")
        rows.append(row)
    return rows


def finish_items(report: PartReport, expected: int) -> None:
    done = [r for r in report.items if r.get("status") == PASSED]
    report.status = (PASSED if len(report.items) == expected and len(done) == expected
                     else FAILED if any(r.get("status") != PASSED for r in report.items) else RAN)


def run_tiny_gpu(ctx: Context, report: PartReport, deadline: Deadline) -> None:
    got = session(ctx, TINY_GPU, tiny_gpu_cmd(ctx.plan), deadline)
    report.items = tiny_rows(ctx, got or [], None)
    finish_items(report, 1)


def run_quiet_host(ctx: Context, report: PartReport, deadline: Deadline) -> None:
    expected = 0
    for agent, threads, tasks in quiet_sessions(ctx.plan):
        expected += len(tasks)
        got = session(ctx, QUIET_HOST, quiet_cmd(ctx.plan, agent, threads, tasks), deadline,
                      env=child_env(**QUIET_ENV))
        if got is None:
            report.reasons.append(f"{agent} at {threads} thread(s) on {', '.join(tasks)} not run: the cap was reached")
            continue
        report.items += tiny_rows(ctx, got, threads)
        done = {r["task"] for r in got}
        missing = [t for t in tasks if t not in done]
        if missing:
            report.reasons.append(f"{agent} at {threads} thread(s): {', '.join(missing)} did not finish")
    goals = [r["goal"] for r in report.items if "goal" in r]
    report.figures = {"goal_met": sum(g.endswith("met") for g in goals), "goal_of": len(goals),
                      "tasks": list(ctx.plan.quiet_tasks)}
    finish_items(report, expected)


RUNNERS: dict[str, Callable[[Context, PartReport, Deadline], None]] = {
    DOCTOR: run_doctor, SMOKE: run_smoke, TIMING: run_timing, TINY_GPU: run_tiny_gpu, QUIET_HOST: run_quiet_host}


# --- the check ---------------------------------------------------------------------------------------------

def allotment(parts: tuple[Part, ...], index: int, left_s: float) -> float:
    """The seconds part `index` may use: the budget left less the caps of the parts after it (their time stays
    reserved), so it also gets what earlier parts left unused."""
    return left_s - sum(p.cap_s for p in parts[index + 1:])


def fits(part: Part, allot_s: float) -> bool:
    return allot_s >= MIN_SHARE * part.cap_s


def previous_crashes(path: Path) -> dict[str, str]:
    """Records whose runs crashed in the last check here, when it ran on this interpreter and torch."""
    try:
        last = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if last.get("python") != sys.executable or last.get("torch") != torch_version():
        return {}
    found: dict[str, str] = {}
    for part in last.get("parts", []):
        if part.get("name") == SMOKE:
            found.update({r["task"]: r.get("reason", "") for r in part.get("items", [])
                          if r.get("status") == CRASHED and "task" in r})
        if part.get("name") == TIMING:
            found.update({x["task"]: x.get("reason", "") for x in part.get("figures", {}).get("handed_over_from", [])
                          if x.get("status") == CRASHED})
    return found


def write_summary(plan: Plan, reports: dict[str, PartReport], started: float, stamp: str) -> None:
    doc = {"started": stamp, "host": os.uname().nodename, "python": sys.executable, "torch": torch_version(),
           "interpreter_note": interpreter_line(), "budget_s": plan.budget_s,
           "elapsed_s": round(time.perf_counter() - started, 1), "log": str(plan.log),
           "parts": [reports[p].to_json() for p in PART_NAMES if p in reports],
           "did_not_fit": [n for n, r in reports.items() if r.status == DID_NOT_FIT],
           "compat_items": [{"part": r.name, "task": i.get("task"), "compat": i["compat"]}
                            for r in reports.values() for i in r.items if i.get("compat")]}
    tmp = plan.summary_json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    tmp.replace(plan.summary_json)


def summarize(plan: Plan, reports: dict[str, PartReport], log: Log, elapsed_s: float) -> None:
    log("")
    log("== summary")
    log(interpreter_line())
    for name in PART_NAMES:
        r = reports[name]
        log(f"{name:<11} {r.status:<11} {r.seconds:>5.0f} s of its {r.cap_s:.0f} s cap")
        if r.name == TIMING and r.figures:
            f = r.figures
            if f.get("task"):
                log(f"  record {f['record']} ({f['task']}; {f['chosen_because']}), {SMOKE_STEPS} steps:")
            for side in ("harness", "bare"):
                s = f.get(side, {})
                if s.get("n"):
                    cv = f"CV {s['cv_percent']:.2f}%" if s.get("cv_percent") is not None else "CV n/a (1 run)"
                    log(f"  {side:<8} n={s['n']}  mean {s['mean_ms']:.0f} ms  {cv}")
            log(f"  harness/bare train_time ratio {f['ratio']:.3f}" if "ratio" in f
                else "  harness/bare ratio: not available (a side has no finished run)")
        elif r.name == QUIET_HOST and r.figures.get("goal_of"):
            log(f"  goal (oracle in {list(GOALS['oracle'])}, baseline in {list(GOALS['baseline'])}): met on "
                f"{r.figures['goal_met']} of {r.figures['goal_of']} item(s)")
        elif r.name == DOCTOR and r.figures.get("verdict"):
            log(f"  {r.figures['verdict']}")
        for row in r.items:
            log(describe(row) if r.name != TIMING else f"  {row['side']:<8} {row.get('status', '?')} "
                f"train_time {row.get('train_time_ms') or 0:.0f} ms, wall {row.get('wall_s') or 0:.1f} s")
        for reason in r.reasons:
            log(f"  - {reason}")
    unfit = [n for n in PART_NAMES if reports[n].status == DID_NOT_FIT]
    if unfit:
        log(f"did not fit the budget: {', '.join(unfit)} (run them in a later session: --only {','.join(unfit)})")
    log(f"elapsed {elapsed_s:.0f} s of the {plan.budget_s:.0f} s budget; log: {plan.log}; JSON: {plan.summary_json}")


def run_check(args: argparse.Namespace) -> int:
    plan = make_plan(args)
    started, stamp = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S")
    plan.work.mkdir(parents=True, exist_ok=True)
    known = previous_crashes(plan.summary_json)
    source = SourceFilter()
    log = Log(plan.log, source)
    log(f"gpu_check {stamp} on {os.uname().nodename}; repo {REPO}")
    log(interpreter_line())
    log(f"budget {plan.budget_s:.0f} s; cache {plan.cache}; records from {plan.records}")
    reports = {p: PartReport(p, next(q.cap_s for q in PARTS if q.name == p)) for p in PART_NAMES}
    for name in plan.left_out:
        reports[name].reasons.append("left out by --only")
    if plan.needs_records:
        log("\n== import the record scripts")
        log.run(import_cmd(plan), cwd=plan.work, timeout_s=60.0)
        for path in pinned_scripts(plan.suite, plan.cache):
            source.add(path)
        # the eras are read from the scripts themselves, now that they are cached
        plan = replace(plan, smoke_tasks=tuple(smoke_set(load_suite(find_suite(plan.suite)), plan.cache)))
        log("smoke tasks, newest first: " + ", ".join(task_label(t, plan.cache) for t in plan.smoke_tasks))
    ctx = Context(plan, log, reports, known)
    for k, part in enumerate(plan.parts):
        report = reports[part.name]
        report.cap_s = part.cap_s
        allot = allotment(plan.parts, k, plan.budget_s - (time.perf_counter() - started))
        if not fits(part, allot):
            report.status = DID_NOT_FIT
            report.reasons.append(f"{max(0.0, allot):.0f} s of the budget left for it, under half its "
                                  f"{part.cap_s:.0f} s cap")
            log(f"\n== {part.name}: did not fit ({max(0.0, allot):.0f} s of the budget left for it; cap "
                f"{part.cap_s:.0f} s)")
            write_summary(plan, reports, started, stamp)
            continue
        log(f"\n== {part.name} (cap {part.cap_s:.0f} s, {allot:.0f} s with what earlier parts left): {part.what}")
        t0 = time.perf_counter()
        try:
            RUNNERS[part.name](ctx, report, Deadline(allot))
        except Exception as exc:  # one part's failure is reported, and the next part still gets its time
            report.status = FAILED
            report.reasons.append(f"the check's own error: {type(exc).__name__}: {exc}"[:300])
        report.seconds = time.perf_counter() - t0
        log(f"== {part.name}: {report.status} in {report.seconds:.0f} s")
        write_summary(plan, reports, started, stamp)
    summarize(plan, reports, log, time.perf_counter() - started)
    write_summary(plan, reports, started, stamp)
    return 0 if all(reports[p.name].status == PASSED for p in plan.parts) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the parts, their caps and commands; run nothing")
    ap.add_argument("--only", metavar="PART[,PART]", help=f"run only these parts: {', '.join(PART_NAMES)}")
    ap.add_argument("--records", default=str(REPO / "benchmarks" / "records"),
                    help="folder holding the record scripts, any layout (default: benchmarks/records/)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per side in the timing part (default 3)")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S,
                    help=f"the whole check's budget (default {BUDGET_S:.0f}: the parts' caps)")
    ap.add_argument("--log", default=str(REPO / "benchmarks" / "gpu_check.last.log"),
                    help="the one log file; the JSON summary goes beside it (.json)")
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "pytest-speedrun-gpu-check"),
                    help="cache for scripts, smoke shards, compile caches and results (default: in the temp dir)")
    ap.add_argument("--suite", default="nanogpt", help=argparse.SUPPRESS)  # stand-in suites, for the tests
    ap.add_argument("--tiny-suite", default="tiny", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.runs < 2:
        ap.error("--runs must be at least 2 (a CV needs two runs)")
    if args.budget_s <= 0:
        ap.error("--budget-s must be positive")
    if args.dry_run:
        print_plan(make_plan(args))
        return 0
    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
