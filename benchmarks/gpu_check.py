"""One-GPU check of the real benchmark: doctor, smoke runs of each era's record, harness vs bare torchrun timing.

    python benchmarks/gpu_check.py [--dry-run] [--all] [--records DIR] [--runs N] [--budget-s S] [--log FILE]

Made for a node with one NVIDIA GPU, no network and little time. It needs only this checkout, torch, pytest
and the record scripts in a folder (`--records`, default `benchmarks/records/`, which git ignores: the
scripts are CC-BY-NC and never committed). In order:

1. imports the scripts into its cache (`pytest-speedrun fetch records --from DIR`);
2. runs `pytest-speedrun doctor --smoke --nproc 1` for the tasks it is about to run;
3. smoke-runs the timing record's task (`pytest --speedrun-suite=nanogpt --speedrun-smoke --speedrun-nproc=1`:
   20 steps on generated shards), which also fills the compile cache;
4. times that record, the latest one that runs on one GPU, `--runs` times under the harness and as often as
   bare `torchrun --standalone --nproc_per_node=1`, alternating, with the same shortened script, shards, env
   contract and compile cache. It prints each side's train_time CV and the harness/bare ratio;
5. smoke-runs the first one-GPU record of every other era (early AdamW/Muon, FlexAttention, FP8), found by
   what the start scripts use; `--all` smoke-runs every one-GPU task instead.

Everything goes to one log (default `benchmarks/gpu_check.last.log`). Without `--all`, no step starts after
`--budget-s` (300 s) and a running one is stopped there, so the check fits the GPU machine's time; what did
not fit is listed. `--dry-run` prints the plan and runs nothing.
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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # usable from a checkout that was never pip-installed

from pytest_speedrun.execution.doctor import FLEX, FP8, DoctorOptions, features, render, run_checks, run_probe  # noqa: E402
from pytest_speedrun.execution.resources import Lease, discover_gpus  # noqa: E402
from pytest_speedrun.execution.runner import contract_env  # noqa: E402
from pytest_speedrun.judging.metrics import parse_log  # noqa: E402
from pytest_speedrun.pipeline.smoke import SMOKE_STEPS, shorten, smoke_dataset, smoke_task  # noqa: E402
from pytest_speedrun.tasks.fetch import resolve_task  # noqa: E402
from pytest_speedrun.tasks.manifest import Task, find_suite, load_suite  # noqa: E402

EARLY = "early (AdamW/Muon)"
MIN_STEP_S = 20.0  # no step starts with less budget than this left
# An exception line of a traceback ("KeyError: 'RANK'"); torchrun's own ChildFailedError report is not the cause.
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)(:|$)")


def era(task: Task, cache: Path) -> str:
    used = features(task, cache, smoke=True)
    return FP8 if FP8 in used else FLEX if FLEX in used else EARLY


@dataclass(frozen=True)
class Plan:
    suite: str
    timing: Task
    smoke_rest: list[Task]
    cache: Path
    records: Path
    log: Path
    runs: int
    budget_s: float | None

    @property
    def work(self) -> Path:
        return self.cache / "gpu-check"

    @property
    def results(self) -> Path:
        return self.work / "results"

    @property
    def all_tasks(self) -> list[Task]:
        return [self.timing, *self.smoke_rest]


def make_plan(args: argparse.Namespace) -> Plan:
    tasks = load_suite(find_suite(args.suite))
    one_gpu = [t for t in tasks if 1 in t.launch.supported_gpu_counts]
    if not one_gpu:
        raise SystemExit(f"gpu_check: suite {args.suite} has no task that runs on one GPU")
    cache = Path(args.cache_dir).resolve()
    timing = one_gpu[-1]  # the latest record that runs on one GPU
    if args.all:
        rest = [t for t in one_gpu if t is not timing]
    else:
        first: dict[str, Task] = {}
        for task in one_gpu:
            first.setdefault(era(task, cache), task)
        rest = [t for t in first.values() if t is not timing]
    budget = args.budget_s if args.budget_s is not None else (None if args.all else 300.0)
    return Plan(args.suite, timing, rest, cache, Path(args.records).resolve(), Path(args.log).resolve(), args.runs,
                budget)


# --- commands ----------------------------------------------------------------------------------------------

def _installed() -> bool:
    try:
        metadata.distribution("pytest-speedrun")
        return True
    except metadata.PackageNotFoundError:
        return False


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    if not _installed():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest_speedrun.cli", *args]


def smoke_cmd(plan: Plan, tasks: list[Task]) -> list[str]:
    plugin = [] if _installed() else ["-p", "pytest_speedrun.plugin"]  # the entry point registers it otherwise
    return [sys.executable, "-m", "pytest", *plugin, "-p", "no:cacheprovider", f"--rootdir={plan.work}", "-q",
            "-rA", f"--speedrun-suite={plan.suite}", "--speedrun-smoke", "--speedrun-nproc=1",
            f"--speedrun-cache-dir={plan.cache}", f"--speedrun-results={plan.results}",
            "-k", " or ".join(t.id for t in tasks)]


def bare_cmd(script: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", str(script)]


def import_cmd(plan: Plan) -> list[str]:
    return cli_cmd("fetch", "records", "--from", str(plan.records), "--suite", plan.suite,
                   "--cache-dir", str(plan.cache))


def doctor_cmd(plan: Plan) -> list[str]:
    return cli_cmd("doctor", "--suite", plan.suite, "--smoke", "--nproc", "1", "-k",
                   ",".join(t.id for t in plan.all_tasks), "--cache-dir", str(plan.cache))


def print_plan(plan: Plan) -> None:
    c = plan.cache
    bare = plan.work / "bare-N" / "train_gpt2.py"
    lines = [
        "gpu_check plan (dry run: nothing runs)",
        f"log: {plan.log}",
        f"budget: {f'{plan.budget_s:.0f} s' if plan.budget_s else 'none'}; cache: {c}",
        f"1. import the record scripts ({'found' if plan.records.is_dir() else 'MISSING'}: {plan.records})",
        f"   $ {shlex.join(import_cmd(plan))}",
        "2. doctor",
        f"   $ {shlex.join(doctor_cmd(plan))}",
        f"3. smoke {plan.timing.id} (record {plan.timing.start.record}, {era(plan.timing, c)}; warms the compile "
        "cache)",
        f"   $ {shlex.join(smoke_cmd(plan, [plan.timing]))}",
        f"4. timing of record {plan.timing.start.record}: {plan.runs} x (harness, bare), alternating, "
        f"{SMOKE_STEPS} steps each",
        f"   harness: $ {shlex.join(smoke_cmd(plan, [plan.timing]))}",
        f"   bare:    $ {shlex.join(bare_cmd(bare))}",
        "            (the same shortened script, smoke shards and NANOGPT_* contract, CUDA_VISIBLE_DEVICES and "
        "compile caches as the harness's lease)",
        "5. smoke " + ", ".join(f"{t.id} (record {t.start.record}, {era(t, c)})" for t in plan.smoke_rest),
        f"   $ {shlex.join(smoke_cmd(plan, plan.smoke_rest))}" if plan.smoke_rest else "   (nothing else)",
    ]
    print("\n".join(lines))


# --- running -----------------------------------------------------------------------------------------------

class Log:
    """Everything printed goes to the terminal and to the one log file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - kept open for the whole check

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.file.write(text + "\n")
        self.file.flush()

    def run(self, cmd: list[str], *, cwd: Path, timeout_s: float, env: dict[str, str] | None = None,
            copy_to: Path | None = None) -> tuple[int | None, float]:
        """Run `cmd` in its own session, its output into the log (and `copy_to`); (exit code or None when
        stopped at the timeout, wall seconds)."""
        self(f"$ {shlex.join(cmd)}")
        start = time.perf_counter()
        copy = open(copy_to, "w", encoding="utf-8") if copy_to else None  # noqa: SIM115
        proc = subprocess.Popen(cmd, cwd=cwd, env=env or child_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.file.write(line)
                print(line, end="", flush=True)
                if copy:
                    copy.write(line)
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code: int | None = proc.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            code = None
            for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):  # pytest kills its runs on SIGTERM
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
        self(f"# exit {code if code is not None else 'stopped at the budget'} after {wall:.1f} s")
        self.file.flush()
        return code, wall


class Budget:
    def __init__(self, seconds: float | None) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - self.elapsed()


def _records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def first_error(log_path: str | None) -> str:
    """The first exception a run's log shows (the cause, not torchrun's report of it), else its last line."""
    if not log_path or not Path(log_path).exists():
        return ""
    lines = [ln.strip() for ln in Path(log_path).read_text(errors="replace").splitlines() if ln.strip()]
    causes = [ln for ln in lines if _EXCEPTION.match(ln) and "ChildFailedError" not in ln]
    return (causes[0] if causes else lines[-1] if lines else "")[:160]


def smoke(plan: Plan, tasks: list[Task], log: Log, budget: Budget) -> list[dict] | None:
    """Smoke-run `tasks` in one pytest session; their result records (None when there was no time)."""
    if budget.left() < MIN_STEP_S:
        log(f"# skipped: no budget left for {', '.join(t.id for t in tasks)}")
        return None
    store = plan.results / "results.jsonl"
    before = len(_records(store))
    log.run(smoke_cmd(plan, tasks), cwd=plan.work, timeout_s=budget.left())
    return _records(store)[before:]


def bare_run(plan: Plan, k: int, log: Log, budget: Budget) -> dict | None:
    """The timing record's shortened script as bare torchrun, with the harness's inputs and compile caches."""
    task = plan.timing
    dataset = smoke_dataset(plan.cache, task.dataset)
    task = smoke_task(resolve_task(task, plan.cache), dataset)
    assert task.start.script.path is not None
    work = plan.work / f"bare-{k}"
    work.mkdir(parents=True, exist_ok=True)
    script = work / "train_gpt2.py"
    script.write_text(shorten(task.start.script.path.read_text(encoding="utf-8")), encoding="utf-8")
    env = child_env()
    env.update(contract_env(train_glob=dataset.train_glob, val_glob=dataset.val_glob, val_tokens=dataset.val_tokens,
                            task_env=task.launch.env, seed=0, threads=None, base={}))
    env.update(Lease(gpus=tuple(discover_gpus()[:1]), cores=()).env(plan.cache / "compile"))
    code, wall = log.run(bare_cmd(script), cwd=work, env=env, timeout_s=budget.left(), copy_to=work / "run.log")
    if code != 0:
        return {"status": "crashed" if code is not None else "stopped", "wall_s": wall,
                "reason": first_error(str(work / "run.log"))}
    try:
        metrics = parse_log(work / "run.log", script)
    except Exception as exc:  # a log without a final line is a result to report, not a crash of the check
        return {"status": "no-result", "wall_s": wall, "reason": str(exc)[:160]}
    return {"status": "passed", "wall_s": wall, "train_time_ms": metrics.train_time_ms}


def _stats(values: list[float]) -> str:
    if not values:
        return "n=0"
    mean = statistics.fmean(values)
    cv = f"CV {100 * statistics.stdev(values) / mean:.2f}%" if len(values) > 1 else "CV n/a (1 run)"
    return f"n={len(values)}  mean {mean:.0f} ms  {cv}  runs " + ", ".join(f"{v:.0f}" for v in values)


def timing(plan: Plan, log: Log, budget: Budget) -> tuple[list[dict], list[dict]]:
    harness, bare = [], []
    pair_s = 0.0
    for k in range(1, plan.runs + 1):
        if budget.left() < max(MIN_STEP_S, pair_s):
            took = f", a pair took {pair_s:.0f} s" if pair_s else ""
            log(f"# timing stopped after {k - 1} pair(s): {max(0.0, budget.left()):.0f} s of budget left{took}")
            break
        t0 = time.perf_counter()
        got = smoke(plan, [plan.timing], log, budget)
        if not got:
            break
        harness.append(got[-1])
        if budget.left() < MIN_STEP_S:
            log("# timing stopped: no budget left for the bare run")
            break
        one = bare_run(plan, k, log, budget)
        if one is None:
            break
        bare.append(one)
        pair_s = time.perf_counter() - t0
    return harness, bare


def summarize(plan: Plan, smoked: list[dict], harness: list[dict], bare: list[dict], skipped: list[str],
              probe: dict, log: Log, budget: Budget) -> None:
    log("")
    log("== summary")
    log(f"torch {probe.get('torch', '?')}, CUDA {probe.get('cuda', '?')}, {probe.get('device_name', 'no GPU seen')}"
        + (f" (probe: {probe['error']})" if "error" in probe else ""))
    by_id = {t.id: t for t in plan.all_tasks}
    ran = [r for r in smoked if r.get("status") == "passed"]
    log(f"smoke on this torch ({SMOKE_STEPS} steps on generated shards, one GPU): {len(ran)} of "
        f"{len(smoked) + len(skipped)} ran")
    for r in smoked:
        task = by_id.get(r["task"])
        what = f"record {task.start.record}, {era(task, plan.cache)}" if task else ""
        figures = (f"train_time {r['train_time_ms']:.0f} ms, wall {r['wall_s']:.1f} s" if r.get("train_time_ms")
                   is not None else first_error(r.get("log_path")) or "; ".join(r.get("reasons", []))[:160])
        log(f"  {r['task']:<8} {what:<32} {r['status']:<9} {figures}")
    for name in skipped:
        log(f"  {name:<8} not run: the budget ran out")
    h = [r["train_time_ms"] for r in harness if r.get("status") == "passed" and r.get("train_time_ms") is not None]
    b = [r["train_time_ms"] for r in bare if r.get("status") == "passed"]
    log(f"timing of record {plan.timing.start.record} ({plan.timing.id} start, {SMOKE_STEPS} steps; train_time "
        "as the record measures it):")
    log(f"  harness  {_stats(h)}")
    log(f"  bare     {_stats(b)}")
    failed = [r for r in bare if r.get("status") != "passed"]
    for r in failed:
        log(f"  bare run {r['status']}: {r.get('reason', '')}")
    if h and b:
        hw = statistics.fmean(r["wall_s"] for r in harness if r.get("status") == "passed")
        bw = statistics.fmean(r["wall_s"] for r in bare if r.get("status") == "passed")
        log(f"  harness/bare train_time ratio {statistics.fmean(h) / statistics.fmean(b):.3f} "
            f"(mean wall per run, torchrun start to exit: harness {hw:.1f} s, bare {bw:.1f} s)")
    else:
        log("  harness/bare ratio: not available (a side has no finished run)")
    limit = f" of the {plan.budget_s:.0f} s budget" if plan.budget_s else ""
    log(f"elapsed {budget.elapsed():.0f} s{limit}; log: {plan.log}")


def run_check(args: argparse.Namespace) -> int:
    first = make_plan(args)  # where things go; the eras are chosen again once the scripts are imported
    budget = Budget(first.budget_s)
    first.work.mkdir(parents=True, exist_ok=True)
    log = Log(first.log)
    log(f"gpu_check {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.uname().nodename}; repo {REPO}")
    log(f"budget {first.budget_s or 'none'} s; cache {first.cache}; records from {first.records}")
    log("\n== import the record scripts")
    log.run(import_cmd(first), cwd=first.work, timeout_s=max(60.0, budget.left()))
    plan = make_plan(args)
    log("tasks: " + ", ".join(f"{t.id} (record {t.start.record}, {era(t, plan.cache)})" for t in plan.all_tasks))
    log(f"\n== doctor (in this process; the same as `pytest-speedrun {shlex.join(doctor_cmd(plan)[3:])}`)")
    probe = run_probe(sys.executable, 180)  # asked once: the doctor and the summary share it
    log(render(run_checks(DoctorOptions(suite=plan.suite, select=",".join(t.id for t in plan.all_tasks),
                                        cache_dir=plan.cache, nproc=1, smoke=True, start=plan.work), probe)))
    log(f"\n== smoke {plan.timing.id} (record {plan.timing.start.record}; warms the compile cache)")
    first_smoke = smoke(plan, [plan.timing], log, budget)
    smoked = first_smoke or []
    skipped = [] if first_smoke is not None else [plan.timing.id]
    log(f"\n== timing: {plan.runs} x (harness, bare torchrun)")
    harness, bare = timing(plan, log, budget)
    if plan.smoke_rest:
        log("\n== smoke " + ", ".join(t.id for t in plan.smoke_rest))
        rest = smoke(plan, plan.smoke_rest, log, budget)
        if rest is None:
            skipped += [t.id for t in plan.smoke_rest]
        else:
            smoked += rest
            done = {r["task"] for r in rest}
            skipped += [t.id for t in plan.smoke_rest if t.id not in done]
    summarize(plan, smoked, harness, bare, skipped, probe, log, budget)
    ok = smoked and all(r.get("status") == "passed" for r in smoked) and not skipped and harness and bare
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    ap.add_argument("--all", action="store_true", help="smoke-run every one-GPU task (no budget unless given)")
    ap.add_argument("--records", default=str(REPO / "benchmarks" / "records"),
                    help="folder holding the record scripts, any layout (default: benchmarks/records/)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per side (default 3)")
    ap.add_argument("--budget-s", type=float, help="stop starting work after this many seconds (default 300; "
                    "none with --all)")
    ap.add_argument("--log", default=str(REPO / "benchmarks" / "gpu_check.last.log"), help="the one log file")
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "pytest-speedrun-gpu-check"),
                    help="cache for scripts, smoke shards, compile caches and results (default: in the temp dir)")
    ap.add_argument("--suite", default="nanogpt", help=argparse.SUPPRESS)  # a stand-in suite, for the tests
    args = ap.parse_args(argv)
    if args.runs < 2:
        ap.error("--runs must be at least 2 (a CV needs two runs)")
    if args.dry_run:
        print_plan(make_plan(args))
        return 0
    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
