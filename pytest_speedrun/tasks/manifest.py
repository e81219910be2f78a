"""Task manifests: schema, loading (tomllib / tomli) and validation with precise, one-line errors.

A manifest is a TOML file under `tasks/<suite>/`. The schema is checked by hand against a small declarative
table below (rather than pydantic or jsonschema) so that the plugin's runtime dependencies stay at pytest and
tomli, and so every error names the manifest file and the dotted key.

`metric` (top level, optional): "time" (default; FSR over train times) or "steps" (the optimization track: FSR
over the records' step counts, which `start.steps` and `target.steps` must then give as the scripts run them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_speedrun.errors import TaskError
from pytest_speedrun.files import PACKAGE_DIR, tomllib
from pytest_speedrun.judging.status import METRICS, STEPS, TIME, Metric
from pytest_speedrun.tasks.runtimes import runtime_file

HINT_LEVELS = (1, 2, 3)
_PACKAGED = PACKAGE_DIR / "suites"  # wheel installs: tasks/ is shipped inside the package
_SOURCE_TREE = PACKAGE_DIR.parent / "tasks"  # source checkouts and editable installs


@dataclass(frozen=True)
class ScriptRef:
    """A record script: a file next to the manifest, or a pinned download (url + sha256).

    A script cut from a training log (`cut`, tasks/log_cut.py) pins the log (`url`, `bytes` its size,
    `log_sha256`) and the cut text (`sha256`). `files` are the other files the script imports from its own folder
    (name -> ScriptRef), e.g. triton_kernels.py; they travel with it."""

    path: Path | None = None
    url: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    log_sha256: str | None = None
    cut: str | None = None
    files: tuple[tuple[str, ScriptRef], ...] = ()

    def describe(self) -> str:
        return str(self.path) if self.path is not None else f"{self.url} (sha256 {self.sha256})"


@dataclass(frozen=True)
class Record:
    """One end of a task: which record, its script and its reference train time (ms)."""

    record: int
    script: ScriptRef
    train_time_ms: float
    steps: int | None = None  # the record's training steps as it runs (its log's final step:N/N); the score
    # of a steps task, and the suspicious-result rule's reference of a time task


@dataclass(frozen=True)
class Launch:
    nproc_per_node: int = 1
    timeout_s: float = 3600.0
    env: dict[str, str] = field(default_factory=dict)
    supported_gpu_counts: tuple[int, ...] = ()
    runtime: str | None = None  # tasks/runtimes.py: the Python-plus-torch stack every run of the task uses


@dataclass(frozen=True)
class Task:
    """A validated task manifest."""

    id: str
    suite: str
    title: str
    target_val_loss: float
    start: Record
    target: Record
    launch: Launch
    hints: dict[int, Path]
    manifest: Path
    dataset: str = "tiny"  # "tiny" (generated) or "fineweb" (downloaded)
    train_shards: int = 1
    reference: str = "manifest"  # "manifest" (fixed t_i, t_{i+1}) or "calibrate" (measured on this machine)
    metric: Metric = TIME  # what the score counts: train time, or training steps (the optimization track)
    track: int | None = None  # the upstream track (1: GPT-2 small, 2: medium, 3: optimization); marker trackN


# --- schema ----------------------------------------------------------------------------------------------
# key -> (python types accepted, required?, human type name)
_NUM = ((int, float), "a number")
_INT = ((int,), "an integer")
_STR = ((str,), "a string")
_TABLE = ((dict,), "a table")
_TOP = {
    "id": (_STR, True),
    "suite": (_STR, True),
    "title": (_STR, False),
    "target_val_loss": (_NUM, True),
    "start": (_TABLE, True),
    "target": (_TABLE, True),
    "launch": (_TABLE, True),
    "hints": (_TABLE, False),
    "data": (_TABLE, False),
    "reference": (_TABLE, False),
    "metric": (_STR, False),
    "track": (_INT, False),
}
_RECORD = {"record": (_INT, True), "script": (_TABLE, True), "train_time_ms": (_NUM, True), "steps": (_INT, False)}
_SCRIPT = {"path": (_STR, False), "url": (_STR, False), "sha256": (_STR, False), "bytes": (_INT, False),
           "log_sha256": (_STR, False), "cut": (_STR, False), "files": (_TABLE, False)}
TRACKS = (1, 2, 3)
_LAUNCH = {
    "nproc_per_node": (_INT, True),
    "timeout_s": (_NUM, True),
    "env": (_TABLE, False),
    "supported_gpu_counts": (((list,), "a list of integers"), False),
    "runtime": (_STR, False),
}
_DATA = {"dataset": (_STR, True), "train_shards": (_INT, False)}
_REFERENCE = {"source": (_STR, True)}
_HINTS = {str(level): (_STR, False) for level in HINT_LEVELS}


class _Checker:
    def __init__(self, manifest: Path) -> None:
        self.manifest = manifest

    def fail(self, key: str, message: str) -> TaskError:
        return TaskError(f"{self.manifest}: key '{key}': {message}")

    def table(self, data: dict[str, Any], schema: dict, prefix: str) -> dict[str, Any]:
        for key in data:
            if key not in schema:
                known = ", ".join(sorted(schema))
                raise self.fail(prefix + key, f"unknown key (known keys here: {known}); remove or rename it")
        for key, ((types, tname), required) in schema.items():
            if key not in data:
                if required:
                    raise self.fail(prefix + key, f"missing; add it ({tname})")
                continue
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, types):
                raise self.fail(prefix + key, f"expected {tname}, got {type(value).__name__} {value!r}")
        return data

    def file(self, key: str, rel: str) -> Path:
        path = (self.manifest.parent / rel).resolve()
        if not path.is_file():
            raise self.fail(key, f"file '{rel}' does not exist (looked for {path}); fix the path or add the file")
        return path


def _sha(chk: _Checker, raw: dict, key: str) -> str:
    sha = raw[key.rsplit(".", 1)[-1]].lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise chk.fail(key, f"{sha!r} is not a 64-digit hex sha256")
    return sha


def _script(chk: _Checker, raw: dict, key: str, companion: bool = False) -> ScriptRef:
    chk.table(raw, _SCRIPT, key + ".")
    files = _companions(chk, raw.get("files", {}), key + ".files") if not companion else ()
    if companion and "files" in raw:
        raise chk.fail(key + ".files", "a companion file cannot have companions of its own; list them all under "
                       "the script's files")
    if "path" in raw:
        if "url" in raw:
            raise chk.fail(key, "give either 'path' or 'url', not both")
        return ScriptRef(path=chk.file(key + ".path", raw["path"]), files=files)
    if "url" not in raw:
        raise chk.fail(key + ".path", "missing; give 'path' (a file next to the manifest) or 'url' + 'sha256'")
    if "sha256" not in raw:
        raise chk.fail(key + ".sha256", "missing; a downloaded script must be pinned by its sha256")
    log_sha = None
    if "cut" in raw or "log_sha256" in raw:
        for need in ("cut", "log_sha256", "bytes"):
            if need not in raw:
                raise chk.fail(f"{key}.{need}", "missing; a script cut from a log pins the log (url, bytes, "
                               "log_sha256), the section (cut) and the cut text (sha256)")
        log_sha = _sha(chk, raw, key + ".log_sha256")
    return ScriptRef(url=raw["url"], sha256=_sha(chk, raw, key + ".sha256"), bytes=raw.get("bytes"),
                     log_sha256=log_sha, cut=raw.get("cut"), files=files)


def _companions(chk: _Checker, raw: dict, key: str) -> tuple[tuple[str, ScriptRef], ...]:
    """The files a script imports from its folder: name -> a script table of their own (plain file names)."""
    out = []
    for name, sub in sorted(raw.items()):
        if "/" in name or "\\" in name or name in ("", ".", "..") or not name.endswith(".py"):
            raise chk.fail(f"{key}.{name}", "a companion is named by a plain .py file name, e.g. triton_kernels.py")
        if not isinstance(sub, dict):
            raise chk.fail(f"{key}.{name}", f"expected a table (url, sha256, ...), got {type(sub).__name__}")
        out.append((name, _script(chk, sub, f"{key}.{name}", companion=True)))
    return tuple(out)


def _record(chk: _Checker, raw: dict, key: str) -> Record:
    chk.table(raw, _RECORD, key + ".")
    if raw["train_time_ms"] <= 0:
        raise chk.fail(key + ".train_time_ms", f"must be positive, got {raw['train_time_ms']}")
    return Record(record=raw["record"], script=_script(chk, raw["script"], key + ".script"),
                  train_time_ms=float(raw["train_time_ms"]), steps=raw.get("steps"))


def load_task(manifest: Path) -> Task:
    """Load and validate one manifest; raise TaskError naming the file and key on any problem."""
    manifest = Path(manifest)
    try:
        raw = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TaskError(f"{manifest}: cannot read manifest ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{manifest}: invalid TOML: {exc}") from None
    chk = _Checker(manifest)
    chk.table(raw, _TOP, "")
    start = _record(chk, raw["start"], "start")
    target = _record(chk, raw["target"], "target")
    metric = raw.get("metric", TIME)
    if metric not in METRICS:
        raise chk.fail("metric", f"{metric!r} is not one of {', '.join(repr(m) for m in METRICS)}")
    if metric == STEPS:
        _check_steps(chk, start, target)
    elif target.train_time_ms >= start.train_time_ms:
        raise chk.fail("target.train_time_ms", f"t_(i+1) = {target.train_time_ms:g} ms must be less than "
                       f"start.train_time_ms t_i = {start.train_time_ms:g} ms (the target record is the faster one)")
    if not 0 < raw["target_val_loss"] < 100:
        raise chk.fail("target_val_loss", f"{raw['target_val_loss']} is not a plausible loss")

    launch_raw = chk.table(raw["launch"], _LAUNCH, "launch.")
    env = chk.table(launch_raw.get("env", {}), {k: (_STR, False) for k in launch_raw.get("env", {})}, "launch.env.")
    gpus = launch_raw.get("supported_gpu_counts", [])
    if any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in gpus):
        raise chk.fail("launch.supported_gpu_counts", f"expected a list of positive integers, got {gpus!r}")
    if launch_raw["nproc_per_node"] < 1:
        raise chk.fail("launch.nproc_per_node", f"must be at least 1, got {launch_raw['nproc_per_node']}")
    if launch_raw["timeout_s"] <= 0:
        raise chk.fail("launch.timeout_s", f"must be positive, got {launch_raw['timeout_s']}")
    runtime = launch_raw.get("runtime")
    if runtime is not None and not runtime_file(manifest.parent, runtime).is_file():
        raise chk.fail("launch.runtime", f"no runtime {runtime!r}: add {runtime_file(manifest.parent, runtime)} "
                       "or name one that exists")
    launch = Launch(nproc_per_node=launch_raw["nproc_per_node"], timeout_s=float(launch_raw["timeout_s"]),
                    env=dict(env), supported_gpu_counts=tuple(gpus), runtime=runtime)

    hints_raw = chk.table(raw.get("hints", {}), _HINTS, "hints.")
    hints = {int(level): chk.file(f"hints.{level}", rel) for level, rel in sorted(hints_raw.items())}

    data = chk.table(raw.get("data", {"dataset": "tiny"}), _DATA, "data.")
    if data["dataset"] not in ("tiny", "fineweb"):
        raise chk.fail("data.dataset", f"{data['dataset']!r} is not one of 'tiny', 'fineweb'")
    reference = chk.table(raw.get("reference", {"source": "manifest"}), _REFERENCE, "reference.")
    if reference["source"] not in ("manifest", "calibrate"):
        raise chk.fail("reference.source", f"{reference['source']!r} is not one of 'manifest', 'calibrate'")
    track = raw.get("track")
    if track is not None and track not in TRACKS:
        raise chk.fail("track", f"{track} is not one of {', '.join(map(str, TRACKS))} (the upstream speedrun tracks)")
    if metric == STEPS and reference["source"] != "manifest":
        raise chk.fail("reference.source", f"a task with metric = {STEPS!r} is scored by its records' steps "
                       "(start.steps, target.steps); measuring their times would not change its score: use 'manifest'")
    return Task(
        id=raw["id"], suite=raw["suite"], title=raw.get("title", raw["id"]),
        target_val_loss=float(raw["target_val_loss"]),
        start=start, target=target, launch=launch, hints=hints, manifest=manifest.resolve(),
        dataset=data["dataset"], train_shards=data.get("train_shards", 1), reference=reference["source"],
        metric=metric, track=track,
    )


def _check_steps(chk: _Checker, start: Record, target: Record) -> None:
    """A steps task is scored from the two records' step counts: both are needed, and the target takes fewer."""
    for key, rec in (("start", start), ("target", target)):
        if rec.steps is None or rec.steps < 1:
            raise chk.fail(f"{key}.steps", f"a task with metric = {STEPS!r} needs the record's training steps as it "
                           f"runs (its log's final step:N/N), a positive integer; got {rec.steps!r}")
    assert start.steps is not None and target.steps is not None
    if target.steps >= start.steps:
        raise chk.fail("target.steps", f"s_(i+1) = {target.steps} must be less than start.steps s_i = {start.steps} "
                       "(the target record takes fewer steps)")


def suite_dirs() -> list[Path]:
    """Where packaged suites live: inside the installed package (wheel) or the source tree's `tasks/`."""
    return [d for d in (_PACKAGED, _SOURCE_TREE) if d.is_dir()]


def available_suites() -> list[str]:
    names = {p.name for d in suite_dirs() for p in d.iterdir() if p.is_dir() and any(p.glob("*.toml"))}
    return sorted(names)


def find_suite(name_or_path: str) -> Path:
    """Resolve `--speedrun-suite`: a packaged suite name, or a directory of manifests."""
    as_path = Path(name_or_path).expanduser()
    if as_path.is_dir() and (any(as_path.glob("*.toml")) or name_or_path not in available_suites()):
        return as_path.resolve()
    for d in suite_dirs():
        if (d / name_or_path).is_dir():
            return (d / name_or_path).resolve()
    raise TaskError(
        f"--speedrun-suite={name_or_path}: no such suite; available: {', '.join(available_suites()) or 'none'} "
        "(or give a directory of task manifests)"
    )


def load_suite(suite_dir: Path) -> list[Task]:
    """Load every manifest of a suite, sorted by task id (a stable order for xdist)."""
    tasks = [load_task(p) for p in sorted(suite_dir.glob("*.toml"))]
    seen: dict[str, Path] = {}
    for t in tasks:
        if t.id in seen:
            raise TaskError(f"{t.manifest}: key 'id': {t.id!r} is already used by {seen[t.id]}; ids must be unique")
        seen[t.id] = t.manifest
    return sorted(tasks, key=lambda t: t.id)


def adhoc_task(script: Path, *, target_val_loss: float, nproc: int = 1, timeout_s: float = 3600.0,
               env: dict[str, str] | None = None, dataset: str = "tiny") -> Task:
    """A one-off task around a single script, for running it under the harness outside a suite (the
    `speedrun_run` fixture). Its reference times are placeholders: it is judged, not scored."""
    ref = ScriptRef(path=Path(script).resolve())
    return Task(id=Path(script).stem, suite="adhoc", title=f"ad-hoc run of {Path(script).name}",
                target_val_loss=target_val_loss, start=Record(0, ref, 2.0), target=Record(0, ref, 1.0),
                launch=Launch(nproc_per_node=nproc, timeout_s=timeout_s, env=dict(env or {})), hints={},
                manifest=ref.path, dataset=dataset)
