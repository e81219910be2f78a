"""`pytest-speedrun doctor`: can the given suite run on this node, and what to do where it cannot.

One table, one row per check: Python, torch, CUDA, GPUs, torchrun, FlexAttention, FP8 matmul, the record
scripts of every suite, FineWeb shards, free disk in the cache, sandboxes, Slurm and the agent's API keys.
A row is `FAIL` only when it stops a selected task of the suite from running; such rows carry their fix,
and any of them makes the exit code 1. `warn` rows are worth knowing but block nothing.

Like the plugin, the controller never imports torch: torch, CUDA, torchrun, FlexAttention and FP8 are asked
of the run's interpreter in a child process with a timeout (`doctor_probe.py`), and GPUs come from
`nvidia-smi`. API keys are reported present or absent, never printed.

Agents other than the built-in ones say what they need by a `credentials()` method returning (variable or
file, present) pairs, any one present sufficing (the coding-agent presets do), and optionally `executable`
and `install`, the tool they run and how to install it.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_speedrun.errors import DataError, SpeedrunError, UsageError
from pytest_speedrun.files import tomllib
from pytest_speedrun.judging.status import LOCAL, SLURM
from pytest_speedrun.tasks.fetch import cached_path
from pytest_speedrun.tasks.manifest import Task, available_suites, find_suite, load_suite
from pytest_speedrun.tasks.record_import import is_cached, suite_pins

OK, WARN, FAIL = "ok", "warn", "FAIL"
FLEX, FP8 = "FlexAttention", "FP8 matmul"
# How a script shows that it needs the feature; the first records that do (reference/records.toml) stand in
# for scripts not cached yet.
_MARKERS = {FLEX: "flex_attention", FP8: "_scaled_mm"}
_FIRST_RECORD = {FLEX: 12, FP8: 19}
SHARD_BYTES = 2 * 100_000_000 + 1024  # a FineWeb10B train shard: 100M uint16 tokens and the header
BASE_NEED_BYTES = 2 << 30  # compile caches, logs, smoke shards
_PROBE = Path(__file__).with_name("doctor_probe.py")


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class DoctorOptions:
    suite: str = "nanogpt"
    select: str | None = None  # -k: task id substrings, comma-separated
    cache_dir: Path | None = None
    data_dir: Path | None = None
    python: str = sys.executable
    python_override: bool = False  # --python given: like --speedrun-python, it overrides every task's runtime
    nproc: int | None = None
    agent: str | None = None
    sandbox: str | None = None
    launcher: str | None = None
    smoke: bool = False  # smoke mode: start scripts only, generated shards
    probe_timeout_s: float = 180.0
    start: Path = field(default_factory=Path.cwd)  # where pytest's ini file is looked for


@dataclass(frozen=True)
class Context:
    opts: DoctorOptions
    tasks: list[Task]
    cache_dir: Path
    probe: dict[str, Any]
    ini: Mapping[str, Any]
    ini_path: Path | None

    @property
    def gpu_tasks(self) -> list[Task]:
        return [t for t in self.tasks if t.launch.supported_gpu_counts]

    def nproc(self, task: Task) -> int:
        return self.opts.nproc or task.launch.nproc_per_node


# --- inputs ------------------------------------------------------------------------------------------------

def find_ini(start: Path) -> tuple[Path | None, dict[str, Any]]:
    """pytest's ini values as pytest finds them: the first pytest.ini, pyproject.toml with
    [tool.pytest.ini_options], tox.ini with [pytest] or setup.cfg with [tool:pytest], from `start` upwards."""
    for folder in (start, *start.parents):
        for name, section in (("pytest.ini", "pytest"), (".pytest.ini", "pytest"), ("pyproject.toml", None),
                              ("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
            path = folder / name
            if not path.is_file():
                continue
            try:
                if section is None:
                    table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("pytest", {})
                    if "ini_options" in table:
                        return path, dict(table["ini_options"])
                    continue
                parser = configparser.ConfigParser(interpolation=None)
                parser.read(path, encoding="utf-8")
            except (OSError, tomllib.TOMLDecodeError, configparser.Error) as exc:
                raise UsageError(f"{path}: cannot read it ({exc})") from None
            if parser.has_section(section):
                return path, dict(parser.items(section))
            if name.endswith("pytest.ini"):
                return path, {}
    return None, {}


def _ini_text(ini: Mapping[str, Any], key: str) -> str:
    value = ini.get(key, "")
    return (value[0] if isinstance(value, list) and value else str(value or "")).strip()


def select_tasks(suite: str, select: str | None) -> list[Task]:
    tasks = load_suite(find_suite(suite))
    if select:
        tasks = [t for t in tasks if any(k.strip() and k.strip() in t.id for k in select.split(","))]
        if not tasks:
            raise UsageError(f"-k {select}: no task of suite {suite} matches")
    return tasks


def run_probe(python: str, timeout_s: float) -> dict[str, Any]:
    """The probe's JSON, or {"error": ...} when the interpreter cannot run it."""
    try:
        proc = subprocess.run([python, str(_PROBE)], capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    except subprocess.TimeoutExpired:
        return {"error": f"the probe did not finish in {timeout_s:.0f} s (a hung GPU or driver?)"}
    except OSError as exc:
        return {"error": f"cannot run it ({exc.strerror})"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {"error": f"the probe failed: {tail[:200]}"}
    return json.loads(lines[-1])


@dataclass(frozen=True)
class Gpu:
    index: str
    name: str
    driver: str
    free_mib: float
    total_mib: float


def query_gpus(nvidia_smi: str = "nvidia-smi") -> tuple[list[Gpu], str]:
    """GPUs as nvidia-smi reports them, and an error line ("" when it answered)."""
    exe = shutil.which(nvidia_smi)
    if exe is None:
        return [], "nvidia-smi not found on PATH"
    try:
        proc = subprocess.run([exe, "--query-gpu=index,name,driver_version,memory.free,memory.total",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi did not answer ({exc})"
    if proc.returncode != 0:
        return [], f"nvidia-smi failed: {(proc.stderr.strip() or proc.stdout.strip() or 'no output')[:200]}"
    gpus = []
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 5:
            continue
        try:
            gpus.append(Gpu(cells[0], cells[1], cells[2], float(cells[3]), float(cells[4])))
        except ValueError:
            gpus.append(Gpu(cells[0], cells[1], cells[2], float("nan"), float("nan")))
    return gpus, ""


def _script_text(task: Task, which: str, cache_dir: Path) -> str | None:
    ref = getattr(task, which).script
    path = ref.path if ref.path is not None else cached_path(cache_dir, ref) if ref.sha256 else None
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path is not None else None
    except OSError:
        return None


def features(task: Task, cache_dir: Path, smoke: bool = False) -> set[str]:
    """FlexAttention / FP8 matmul, if a script the task runs uses them (smoke mode runs only the start)."""
    found = set()
    for which in ("start",) if smoke else ("start", "target"):
        text = _script_text(task, which, cache_dir)
        record = getattr(task, which).record
        for feature, marker in _MARKERS.items():
            if (marker in text) if text is not None else (task.suite == "nanogpt"
                                                         and record >= _FIRST_RECORD[feature]):
                found.add(feature)
    return found


def _ids(tasks: list[Task], shown: int = 6) -> str:
    ids = [t.id for t in tasks]
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / (1 << 30):.1f} GiB"


# --- checks ------------------------------------------------------------------------------------------------

def check_python(ctx: Context) -> Check:
    here = platform.python_version()
    p = ctx.probe
    if "error" in p:
        return Check("python", FAIL, f"{here} here; the run interpreter {ctx.opts.python}: {p['error']}",
                     "pass --python PATH (the interpreter you give --speedrun-python)")
    run_version = tuple(int(x) for x in p["python"].split(".")[:2])
    status = OK if sys.version_info >= (3, 10) and run_version >= (3, 10) else FAIL
    return Check("python", status, f"{here} here; runs use {p['python']} ({p['executable']})",
                 "" if status == OK else "use Python 3.10 or newer")


def check_torch(ctx: Context) -> Check:
    p = ctx.probe
    if "error" in p:
        return Check("torch", WARN, "not checked: the run interpreter did not answer")
    if "torch_error" in p:
        build = "a CUDA build of torch" if ctx.gpu_tasks else "torch"
        return Check("torch", FAIL, f"not importable in {ctx.opts.python}: {p['torch_error']}",
                     f"{ctx.opts.python} -m pip install torch ({build}), or pass --python PATH")
    return Check("torch", OK, f"{p['torch']} in {ctx.opts.python}")


def check_cuda(ctx: Context) -> Check:
    p = ctx.probe
    if "torch" not in p:
        return Check("CUDA", WARN, "not checked: torch is not importable")
    need = ctx.gpu_tasks
    if p.get("cuda") is None:
        detail = f"torch {p['torch']} is a CPU-only build"
        if not need:
            return Check("CUDA", OK, detail + "; the selected tasks run on the CPU")
        return Check("CUDA", FAIL, detail + f"; {_ids(need)} need CUDA",
                     "install a CUDA build of torch, e.g. pip install torch --index-url "
                     "https://download.pytorch.org/whl/cu126")
    if not p.get("cuda_available"):
        detail = f"torch built for CUDA {p['cuda']}, but torch sees no CUDA device"
        return Check("CUDA", FAIL if need else OK, detail,
                     "check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES" if need else "")
    cap = ".".join(map(str, p.get("capability", [])))
    return Check("CUDA", OK, f"CUDA {p['cuda']}; torch sees {p['devices']} device(s), {p['device_name']} "
                             f"(compute capability {cap})")


def check_gpus(ctx: Context) -> Check:
    from pytest_speedrun.execution.resources import discover_gpus

    gpus, error = query_gpus()
    usable = discover_gpus()
    need = ctx.gpu_tasks
    if gpus:
        names = sorted({g.name for g in gpus})
        detail = (f"{len(gpus)} x {', '.join(names)}, driver {gpus[0].driver}; free memory "
                  + ", ".join(f"{g.free_mib / 1024:.1f}/{g.total_mib / 1024:.1f} GiB" for g in gpus))
    else:
        detail = error
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    detail += f"; runs may use {len(usable)}" + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else "")
    if not need:
        return Check("GPUs", OK, detail + "; the selected tasks need none")
    if not usable:
        return Check("GPUs", FAIL, detail + f"; {_ids(need)} need GPUs",
                     "run on a GPU node (check nvidia-smi -L and CUDA_VISIBLE_DEVICES)")
    unsupported = [t for t in need if ctx.nproc(t) not in t.launch.supported_gpu_counts]
    too_few = [t for t in need if t not in unsupported and ctx.nproc(t) > len(usable)]
    if unsupported or too_few:
        parts = []
        if too_few:
            parts.append(f"{_ids(too_few)} need {max(ctx.nproc(t) for t in too_few)} GPU(s)")
        if unsupported:
            parts.append(f"{_ids(unsupported)} do not support {ctx.opts.nproc} GPU(s)")
        fits = [t for t in need if len(usable) in t.launch.supported_gpu_counts]
        if ctx.opts.nproc is None and fits and too_few:
            fix = (f"run with --speedrun-nproc={len(usable)} (check: doctor --nproc {len(usable)}), where "
                   f"{_ids(fits)} run")
        else:
            fix = "select tasks that fit with -k, or use a node with more GPUs"
        return Check("GPUs", FAIL, detail + "; " + "; ".join(parts), fix)
    busy = [g for g in gpus if g.total_mib and g.free_mib < 0.9 * g.total_mib]
    if busy:
        return Check("GPUs", WARN, detail + "; " + ", ".join(f"GPU {g.index}" for g in busy)
                     + " partly in use by another process", "free them (nvidia-smi shows who holds them)")
    return Check("GPUs", OK, detail)


def check_torchrun(ctx: Context) -> Check:
    p = ctx.probe
    if "torch" not in p:
        return Check("torchrun", WARN, "not checked: torch is not importable")
    need = [t for t in ctx.tasks if t.launch.supported_gpu_counts or ctx.nproc(t) > 1]
    if p.get("torchrun"):
        return Check("torchrun", OK, f"torch.distributed.run importable in {ctx.opts.python}")
    detail = f"import torch.distributed.run failed in {ctx.opts.python}: {p.get('torchrun_error', '')}"
    if not need:
        return Check("torchrun", WARN, detail + "; the selected tasks run as one CPU process and need none")
    return Check("torchrun", FAIL, detail + f"; {_ids(need)} launch through it",
                 f"install a complete torch in {ctx.opts.python} (torchrun is torch.distributed.run), or --python")


def check_feature(ctx: Context, feature: str) -> Check:
    p = ctx.probe
    need = [t for t in ctx.tasks if feature in features(t, ctx.cache_dir, ctx.opts.smoke)]
    needed_by = f"; needed by {_ids(need)}" if need else "; the selected tasks do not use it"
    if "torch" not in p:
        return Check(feature, WARN, "not checked: torch is not importable")
    if feature == FLEX:
        if "flex_error" in p:
            return Check(feature, FAIL if need else WARN, f"unavailable in torch {p['torch']}: {p['flex_error']}"
                         + needed_by, "install torch 2.5 or newer (records 12+ were timed on 2.6 nightly)"
                         if need else "")
        if p["flex"] != "cuda":
            return Check(feature, WARN if need else OK, "flex_attention runs on the CPU; not tried on a GPU "
                                                        "(torch sees none)" + needed_by)
        return Check(feature, OK, "flex_attention ran on cuda (eager; smoke mode compiles it)" + needed_by)
    if p.get("fp8"):
        note = "" if p.get("custom_op") else "; torch.library.custom_op is missing (records 19+ use it)"
        return Check(feature, FAIL if need and note else OK, "torch._scaled_mm (float8_e4m3fn) ran on cuda"
                     + note + needed_by, "install torch 2.5 or newer" if need and note else "")
    error = p.get("fp8_error", "")
    if not p.get("cuda_available"):
        return Check(feature, WARN if need else OK, f"not tried: {error}" + needed_by)
    cap = ".".join(map(str, p.get("capability", [])))
    return Check(feature, FAIL if need else WARN, f"torch._scaled_mm failed on {p.get('device_name')} "
                 f"(compute capability {cap}): {error}" + needed_by,
                 f"FP8 needs compute capability 8.9+ (H100, H200, L4, L40) and a recent torch; or deselect "
                 f"{_ids(need)} with -k" if need else "")


def check_records(ctx: Context, suite: str, tasks: list[Task], requested: bool) -> Check:
    name = f"records: {Path(suite).name if os.sep in suite else suite}"
    if ctx.opts.smoke and requested:
        pins = [p for p in suite_pins(tasks) if any(u.endswith(" start") for u in p.uses)]
    else:
        pins = suite_pins(tasks)
    if not pins:
        return Check(name, OK, f"in the suite ({len(tasks)} task(s)); nothing to fetch")
    missing = [p for p in pins if not is_cached(p.ref, ctx.cache_dir)]
    detail = f"{len(pins) - len(missing)} of {len(pins)} distinct pinned script(s) cached in " \
        f"{ctx.cache_dir / 'records'}"
    if not missing:
        return Check(name, OK, detail)
    shown = "; ".join(f"record {p.record} ({', '.join(p.uses)})" for p in missing[:4])
    more = f"; and {len(missing) - 4} more" if len(missing) > 4 else ""
    return Check(name, FAIL if requested else WARN, f"{detail}; missing {shown}{more}",
                 f"pytest-speedrun fetch records --suite {suite} (online) or add --from DIR (offline: any folder "
                 "holding them, e.g. a clone of the pinned repository)")


def check_fineweb(ctx: Context) -> Check | None:
    from pytest_speedrun.data.dataset import read_header
    from pytest_speedrun.settings import default_data_dir

    users = [t for t in ctx.tasks if t.dataset == "fineweb"]
    if not users:
        return None
    need = max(t.train_shards for t in users)
    data_dir = ctx.opts.data_dir or default_data_dir()
    fetch = f"pytest-speedrun fetch data --train-shards {need} (or point --speedrun-data at existing shards)"
    if not data_dir.is_dir():
        if ctx.opts.smoke:
            return Check("FineWeb", OK, f"none in {data_dir}; not needed: smoke mode generates its shards")
        return Check("FineWeb", FAIL, f"no shard folder {data_dir}; the selected tasks need val + {need} train "
                                      "shards", fetch)
    val = sorted(data_dir.glob("fineweb_val_*.bin"))
    train = sorted(data_dir.glob("fineweb_train_*.bin"))
    bad = []
    for shard in val + train:
        try:
            read_header(shard)
        except DataError as exc:
            bad.append(str(exc))
    detail = f"{len(val)} val + {len(train)} train shard(s) in {data_dir}, " + (
        f"{len(bad)} with a bad header: {bad[0]}" if bad else "headers valid")
    if ctx.opts.smoke:
        return Check("FineWeb", OK, detail + "; not needed: smoke mode generates its shards")
    short = [t for t in users if t.train_shards > len(train)]
    if bad:
        return Check("FineWeb", FAIL, detail, "delete the bad shard(s) and run " + fetch)
    if not val or short:
        lack = (["no fineweb_val_*.bin"] if not val else []) + (
            [f"{_ids(short)} need up to {max(t.train_shards for t in short)} train shards"] if short else [])
        return Check("FineWeb", FAIL, detail + "; " + "; ".join(lack), fetch + f" --data-dir {data_dir}")
    return Check("FineWeb", OK, detail + f"; the selected tasks need {need}")


def check_disk(ctx: Context) -> Check:
    from pytest_speedrun.settings import default_data_dir

    probe = ctx.cache_dir
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    need, why = BASE_NEED_BYTES, "compile caches, logs and smoke shards"
    users = [t for t in ctx.tasks if t.dataset == "fineweb"]
    data_dir = ctx.opts.data_dir or default_data_dir()
    if users and not ctx.opts.smoke and ctx.opts.data_dir is None:
        have = len(list(data_dir.glob("fineweb_train_*.bin"))) if data_dir.is_dir() else 0
        to_fetch = max(0, max(t.train_shards for t in users) - have) + (0 if (data_dir / "fineweb_val_000000.bin")
                                                                         .exists() else 1)
        if to_fetch:
            need += to_fetch * SHARD_BYTES
            why += f", {to_fetch} FineWeb shard(s) still to fetch"
    detail = f"{_gib(free)} free in {probe} (needs about {_gib(need)}: {why})"
    if free < need:
        return Check("disk", FAIL, detail, "free space there, or point PYTEST_SPEEDRUN_CACHE / --cache-dir at a "
                                           "bigger disk")
    return Check("disk", WARN if free < 2 * need else OK, detail)


def check_sandbox(ctx: Context) -> Check:
    from pytest_speedrun.execution.sandbox import KINDS, probe

    wanted = ctx.opts.sandbox or "none"
    if wanted not in KINDS:
        raise UsageError(f"--sandbox={wanted}: unknown sandbox; use one of {', '.join(KINDS)}")
    boxes = {kind: probe(kind) for kind in KINDS if kind != "none"}
    usable = [k for k, b in boxes.items() if b.available]
    detail = "available: " + ", ".join(["none", *usable]) + "".join(
        f"; {k}: unavailable ({b.why_not})" for k, b in boxes.items() if not b.available)
    if wanted != "none" and not boxes[wanted].available:
        fix = "install bubblewrap (e.g. apt-get install bubblewrap)" if wanted == "bwrap" else \
            "install util-linux (unshare) and iproute2 (ip), and allow user namespaces"
        return Check("sandbox", WARN, detail + f"; --speedrun-sandbox={wanted} would run NOT isolated", fix)
    return Check("sandbox", OK, detail + (f"; using {wanted}" if wanted != "none" else ""))


def check_slurm(ctx: Context) -> Check:
    launcher = ctx.opts.launcher or _ini_text(ctx.ini, "speedrun_launcher") or LOCAL
    if launcher != SLURM:
        return Check("Slurm", OK, f"not configured ({launcher} launcher)")
    problems, facts = [], []
    if importlib.util.find_spec("submitit") is None:
        problems.append("submitit is not installed")
    missing = [tool for tool in ("sbatch", "squeue", "scancel", "sinfo") if shutil.which(tool) is None]
    if missing:
        problems.append(f"{', '.join(missing)} not on PATH")
    partition = _ini_text(ctx.ini, "speedrun_slurm_partition")
    if "sinfo" not in missing:
        try:
            out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
            parts = [p.strip() for p in out.stdout.split()]
            facts.append("partitions " + ", ".join(parts) if out.returncode == 0 else
                         f"sinfo failed: {out.stderr.strip()[:120]}")
            if out.returncode != 0:
                problems.append("slurmctld does not answer")
            elif partition and partition not in {p.rstrip("*") for p in parts}:
                problems.append(f"partition {partition!r} (ini speedrun_slurm_partition) does not exist")
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"sinfo did not answer ({exc})")
    detail = "; ".join(["launcher slurm" + (f", partition {partition}" if partition else ""), *facts, *problems])
    if problems:
        return Check("Slurm", FAIL, detail, "pip install 'pytest-speedrun[slurm]' and run on a host with the "
                                            "Slurm client tools and a reachable slurmctld")
    return Check("Slurm", OK, detail)


def agent_needs(spec: str, ini: Mapping[str, Any], ini_path: Path | None, start: Path
                ) -> tuple[str, list[tuple[str, bool]], str] | None:
    """(what the agent is, its credential sources as (variable or file, present), a problem with the tool
    itself or ""); None when the agent does not say what it needs."""
    from pytest_speedrun.agents import llm
    from pytest_speedrun.agents.registry import make_agent

    name, sep, arg = spec.partition(":")
    if name in ("baseline", "oracle", "command"):
        return f"{name} agent", [], ""
    pyproject = ini_path if ini_path is not None and ini_path.name == "pyproject.toml" else start / "pyproject.toml"
    tables = llm.read_agent_tables(pyproject)
    if name in llm.PRESETS or name in tables:
        source = llm.ConfigSource(tables=tables, tables_path=str(pyproject), ini=lambda key: ini.get(key))
        s = llm.resolve_settings(name, arg or None, source)
        keys = [(s.api_key_env, bool(os.environ.get(s.api_key_env, "").strip()))] if s.api_key_env else []
        return f"{name} agent ({s.model or 'the first served model'} at {s.endpoint()})", keys, ""
    agent = make_agent(spec)
    credentials = getattr(agent, "credentials", None)
    if not callable(credentials):
        return None
    exe = getattr(agent, "executable", "")
    problem = f"`{exe}` is not on PATH" if exe and shutil.which(exe) is None else ""
    return f"{agent.name} agent", list(credentials()), problem


def check_agent(ctx: Context) -> Check:
    spec = ctx.opts.agent or _ini_text(ctx.ini, "speedrun_agent")
    if not spec:
        return Check("agent", OK, "no agent configured (smoke mode and calibration need none); "
                                     "pass --agent NAME to check its keys")
    try:
        needs = agent_needs(spec, ctx.ini, ctx.ini_path, ctx.opts.start)
    except SpeedrunError as exc:
        return Check("agent", FAIL, str(exc), "fix the agent's name or its configuration")
    if needs is None:
        return Check("agent", WARN, f"agent {spec!r} does not say which credentials it needs")
    what, sources, problem = needs
    if problem:
        install = getattr(make_agent_quiet(spec), "install", "") or "install the tool"
        return Check("agent", FAIL, f"{what}: {problem}", install)
    if not sources:
        return Check("agent", OK, f"{what}: needs no API key")
    detail = f"{what}: " + ", ".join(f"{name} {'present' if present else 'absent'}" for name, present in sources) \
        + " (values never shown)"
    if any(present for _, present in sources):
        return Check("agent", OK, detail)
    variables = [n for n, _ in sources if "/" not in n]
    files = [n for n, _ in sources if "/" in n]
    fix = (f"export {variables[0]}=..." if len(variables) == 1 else f"set one of {', '.join(variables)}"
           if variables else "") + (" or " if variables and files else "") + \
        (f"sign in with the tool (it writes {files[0]})" if files else "") + \
        "; keys reach the agent process only, never a training run"
    return Check("agent", FAIL, detail, fix)


def make_agent_quiet(spec: str) -> object | None:
    from pytest_speedrun.agents.registry import make_agent

    try:
        return make_agent(spec)
    except SpeedrunError:
        return None


# --- the table ---------------------------------------------------------------------------------------------

def run_checks(opts: DoctorOptions, probe: dict[str, Any] | None = None) -> list[Check]:
    """Every check, in table order. `probe`: the run interpreter's answer when the caller already has it."""
    from pytest_speedrun.settings import default_cache_dir

    tasks = select_tasks(opts.suite, opts.select)
    ini_path, ini = find_ini(opts.start)
    if probe is None:
        probe = run_probe(opts.python, opts.probe_timeout_s)
    ctx = Context(opts, tasks, opts.cache_dir or default_cache_dir(), probe, ini, ini_path)
    checks: list[Check] = []
    steps: list[Callable[[], Check | None]] = [
        lambda: check_python(ctx), lambda: check_torch(ctx), lambda: check_cuda(ctx), lambda: check_gpus(ctx),
        lambda: check_torchrun(ctx), lambda: check_feature(ctx, FLEX), lambda: check_feature(ctx, FP8),
        lambda: check_records(ctx, opts.suite, tasks, requested=True),
    ]
    others = [s for s in available_suites() if s != opts.suite and find_suite(s) != find_suite(opts.suite)]
    steps += [lambda s=s: check_records(ctx, s, load_suite(find_suite(s)), requested=False) for s in others]
    steps += [lambda: check_fineweb(ctx), lambda: check_disk(ctx), lambda: check_sandbox(ctx),
              lambda: check_slurm(ctx), lambda: check_agent(ctx)]
    for step in steps:
        check = step()
        if check is not None:
            checks.append(check)
    if "torch" in probe:  # after the suite's own records row: which runtime each task runs in
        at = next((i + 1 for i, c in enumerate(checks) if c.name.startswith("records")), len(checks))
        checks[at:at] = [Check(*row) for row in runtime_rows(ctx)]
    return checks


def runtime_rows(ctx: Context) -> list[tuple[str, str, str, str]]:
    """The torch-compatibility verdict per runtime (doctor_runtimes.py), with the session's own choice: the
    ini's runtime mapping (speedrun_runtimes) and --python as --speedrun-python."""
    from pytest_speedrun.execution.doctor_runtimes import check_runtimes
    from pytest_speedrun.execution.runtime import RuntimeChooser
    from pytest_speedrun.settings import parse_runtime_map

    raw = ctx.ini.get("speedrun_runtimes", [])
    lines = raw.splitlines() if isinstance(raw, str) else list(raw)
    try:
        mapped = dict(parse_runtime_map([ln for ln in lines if ln.strip()]))
    except SpeedrunError as exc:
        return [("runtimes", FAIL, str(exc), f"fix speedrun_runtimes in {ctx.ini_path}")]
    chooser = RuntimeChooser(python=ctx.opts.python, python_override=ctx.opts.python_override, mapped=mapped,
                             cache_dir=ctx.cache_dir)
    return check_runtimes(ctx.tasks, chooser, ctx.cache_dir, query_gpus()[0])


def render(checks: list[Check], width: int = 56) -> str:
    """The checks as one text table (check, status, detail, fix), long cells wrapped."""
    name_w = max(len("check"), *(len(c.name) for c in checks))
    def wrap(text: str) -> list[str]:  # paths stay whole, even when longer than the column
        return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False) or [""]

    rows = [("check", "status", ["detail"], ["fix"])]
    rows += [(c.name, c.status, wrap(c.detail), wrap(c.fix)) for c in checks]
    lines = []
    for name, status, detail, fix in rows:
        for i in range(max(len(detail), len(fix))):
            cells = (name if i == 0 else "", status if i == 0 else "", detail[i] if i < len(detail) else "",
                     fix[i] if i < len(fix) else "")
            lines.append(f"{cells[0]:<{name_w}}  {cells[1]:<6}  {cells[2]:<{width}}  {cells[3]}".rstrip())
    return "\n".join(lines)


def verdict(suite: str, tasks: int, checks: list[Check]) -> tuple[int, str]:
    failed = [c.name for c in checks if c.status == FAIL]
    if failed:
        return 1, f"suite {suite}: cannot run here ({len(failed)} failed: {', '.join(failed)})"
    return 0, f"suite {suite}: can run here ({tasks} task(s) selected)"
