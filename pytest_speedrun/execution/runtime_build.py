"""Building a runtime (tasks/runtimes.py) into the cache with uv, listing the wheels it needs, and listing what is
built. `execution/runtime.py` decides which interpreter an item uses; it asks `built_python` here.

A runtime lives in `<cache>/runtimes/<name>/`: a virtual environment made by `uv venv` from a base Python already
on the machine (uv's managed Pythons come from a host that air-gapped nodes cannot reach, so downloads are off),
and `runtime.json`, the build record, written last. A folder without a record is not built: its build failed, or
its torch was not the runtime's. The environment's `bin/python` links to the base interpreter, so the base must
stay where it is (and, under Slurm, be visible to the nodes, as the runtime folder must).

Sources: the registries (the user's pip and uv index settings, which uv does not read from pip's configuration,
plus the runtime's own index), a folder of wheels (`--no-index --find-links`), and wheel files named on the
command line (a runtime with `user_wheel = true` needs its torch wheel that way).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_speedrun.errors import RuntimeBuildError
from pytest_speedrun.files import write_atomic
from pytest_speedrun.tasks.runtimes import Runtime, suite_runtimes

__all__ = [
    "DEFAULT_PLATFORM",
    "RECORD",
    "RUNTIMES",
    "IndexSettings",
    "build_command",
    "build_info",
    "build_runtime",
    "built_python",
    "download_hint",
    "find_base_python",
    "find_runtime",
    "find_uv",
    "human_size",
    "list_runtimes",
    "required_wheels",
    "runtime_dir",
    "unfinished_runtimes",
    "user_index_settings",
]

RUNTIMES = "runtimes"  # under the cache dir: <cache>/runtimes/<name>/
RECORD = "runtime.json"  # the build record, written last: its presence means "built"
DEFAULT_PLATFORM = "x86_64-unknown-linux-gnu"  # uv's name for the GPU nodes' platform
UV_TIMEOUT_S = 3 * 3600.0  # a CUDA torch is GBs of wheels on a slow mirror
PROBE_TIMEOUT_S = 300.0  # importing a CUDA torch cold from a network file system
# uv reads uv.toml / pyproject.toml from its working folder upwards, and `python -c` imports from it: run both in
# the root, so a project folder's settings or a stray `torch/` never leak into a build (every path is absolute)
NEUTRAL_CWD = Path(os.sep)
# uv must never fetch a managed Python: air-gapped nodes cannot reach its host, and the base is the user's choice
NO_DOWNLOADS = {"UV_PYTHON_DOWNLOADS": "never", "NO_COLOR": "1"}
_BASE_PROBE = "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])"
_TORCH_PROBE = (
    "import json, sys\n"
    "out = {'python_version': '%d.%d.%d' % sys.version_info[:3]}\n"
    "try:\n"
    "    import torch\n"
    "    out['torch'] = str(torch.__version__)\n"
    "    cuda = getattr(getattr(torch, 'version', None), 'cuda', None)\n"
    "    out['cuda'] = None if cuda is None else str(cuda)\n"
    "except Exception as exc:\n"
    "    out['error'] = f'{type(exc).__name__}: {exc}'\n"
    "print(json.dumps(out))\n"
)
Log = Callable[[str], object]


# --------------------------------------------------------------------------------------------------- where things are
def runtime_dir(cache_dir: Path, name: str) -> Path:
    return Path(cache_dir) / RUNTIMES / name


def built_python(cache_dir: Path, name: str) -> Path | None:
    """The runtime's interpreter, if it is built (its build record exists); else None."""
    folder = runtime_dir(cache_dir, name)
    python = folder / "bin" / "python"
    return python if (folder / RECORD).is_file() and python.exists() else None


def build_info(cache_dir: Path, name: str) -> dict | None:
    """The build record of a built runtime (None when there is none)."""
    path = runtime_dir(cache_dir, name) / RECORD
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RuntimeBuildError(f"{path}: unreadable build record ({exc}); rebuild it with "
                                f"`pytest-speedrun runtime build {name} --rebuild`") from None


def list_runtimes(cache_dir: Path) -> list[dict]:
    """The build records of every runtime built under `cache_dir`, by name, each with its folder (`dir`)."""
    cache_dir = Path(cache_dir).resolve()
    root = cache_dir / RUNTIMES
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.is_dir() and not folder.name.startswith(".") and built_python(cache_dir, folder.name):
            info = build_info(cache_dir, folder.name)
            if info is not None:
                found.append({**info, "dir": str(folder)})
    return found


def unfinished_runtimes(cache_dir: Path) -> list[Path]:
    """Runtime folders without a build record: a build that failed, was refused or is under way."""
    root = Path(cache_dir) / RUNTIMES
    return [f for f in sorted(root.iterdir()) if f.is_dir() and not f.name.startswith(".")
            and not (f / RECORD).is_file()] if root.is_dir() else []


def find_runtime(suite: str, name: str) -> Runtime:
    """The runtime `name` of a suite (a packaged suite's name or a folder of manifests)."""
    from pytest_speedrun.tasks.manifest import find_suite

    known = suite_runtimes(find_suite(suite))
    if name not in known:
        raise RuntimeBuildError(f"suite {suite} has no runtime {name!r}; known: {', '.join(sorted(known)) or 'none'} "
                                f"(runtimes/NAME.toml beside its manifests)")
    return known[name]


def build_command(runtime: Runtime) -> str:
    """The command that builds a runtime, for messages."""
    return f"pytest-speedrun runtime build {runtime.name}" + (" --wheel TORCH.whl" if runtime.user_wheel else "")


# ---------------------------------------------------------------------------------------------------- tools and bases
def find_uv() -> str:
    """uv's executable: the `uv` package's binary, else `uv` on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if found is None:
        raise RuntimeBuildError("uv is not installed: `pip install uv` or `pip install pytest-speedrun[runtime]`")
    return found


def _describe_python(python: str) -> tuple[str, str] | None:
    """(real executable, version) of an interpreter, or None when it does not run (a pyenv shim for a version
    that is not selected fails here)."""
    try:
        proc = subprocess.run([python, "-I", "-c", _BASE_PROBE], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, start_new_session=True, cwd=NEUTRAL_CWD)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = proc.stdout.split()
    return (lines[0], lines[1]) if proc.returncode == 0 and len(lines) == 2 else None


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def find_base_python(runtime: Runtime, base_python: str | None = None, *, log: Log = print,
                     path: str | None = None) -> tuple[str, str]:
    """(interpreter, version) to build the runtime from: `base_python`, else the first interpreter on PATH whose
    major.minor is the runtime's (`python3.12`, then `python3`, `python`)."""
    if base_python is not None:
        got = _describe_python(base_python)
        if got is None:
            raise RuntimeBuildError(f"--python {base_python}: not an interpreter that runs here; give the path of "
                                    f"a Python {runtime.python}")
        if _minor(got[1]) != runtime.python:
            log(f"warning: --python {base_python} is Python {got[1]}; runtime {runtime.name} is defined for "
                f"Python {runtime.python}")
        return got
    search = os.environ.get("PATH", "") if path is None else path
    tried: set[str] = set()
    for exe in (f"python{runtime.python}", "python3", "python"):
        for folder in search.split(os.pathsep):
            candidate = Path(folder or ".") / exe
            if str(candidate) in tried or not os.access(candidate, os.X_OK) or candidate.is_dir():
                continue
            tried.add(str(candidate))
            got = _describe_python(str(candidate))
            if got is not None and _minor(got[1]) == runtime.python:
                return got
    raise RuntimeBuildError(f"runtime {runtime.name} needs a Python {runtime.python} to build from and none is on "
                            f"PATH (python{runtime.python}, python3, python); give one with --python PATH")


# ------------------------------------------------------------------------------------------------------------ indexes
def _words(value: str | None) -> list[str]:
    return value.split() if value else []


def _pip_config(env: Mapping[str, str]) -> str:
    """`pip config list` of the interpreter running this ("" when pip is absent or fails)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, env=dict(env), start_new_session=True)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def _parse_pip_config(text: str) -> dict[str, list[str]]:
    """index-url / extra-index-url / find-links from `pip config list` lines such as
    `global.extra-index-url='a b'`; the environment's (`:env:`) beat install's, which beat global's."""
    rank = {":env:": 0, "install": 1, "global": 2}
    best: dict[str, tuple[int, list[str]]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        scope, _, option = key.strip().rpartition(".")
        if not sep or option not in ("index-url", "extra-index-url", "find-links"):
            continue
        order = rank.get(scope, 3)
        if option not in best or order < best[option][0]:
            best[option] = (order, _words(value.strip().strip("'\"")))
    return {option: values for option, (_, values) in best.items()}


@dataclass(frozen=True)
class IndexSettings:
    """Where uv looks for packages, each source with where it came from (for the build's output)."""

    index_url: tuple[str, str] | None = None  # (url, origin); None: uv's default, PyPI
    extra_index_urls: tuple[tuple[str, str], ...] = ()
    find_links: tuple[tuple[str, str], ...] = ()

    def with_runtime(self, runtime: Runtime) -> IndexSettings:
        """The runtime's own index (its torch's CUDA variant) first among the extra indexes."""
        if not runtime.index or runtime.index in [u for u, _ in self.extra_index_urls]:
            return self
        return IndexSettings(self.index_url, ((runtime.index, f"runtime {runtime.name}"), *self.extra_index_urls),
                             self.find_links)

    def args(self, env: Mapping[str, str]) -> list[str]:
        out = ["--index-url", self.index_url[0]] if self.index_url else []
        for url, _ in self.extra_index_urls:
            out += ["--extra-index-url", url]
        for link, _ in self.find_links:
            out += ["--find-links", link]
        # pip takes the best version across all its indexes; uv's default takes the first index that has a name,
        # which misses a pin that a local extra index lacks. The user's own UV_INDEX_STRATEGY wins.
        if (self.extra_index_urls or self.find_links) and "UV_INDEX_STRATEGY" not in env:
            out += ["--index-strategy", "unsafe-best-match"]
        return out

    def describe(self) -> str:
        parts = [f"index {self.index_url[0]} ({self.index_url[1]})" if self.index_url
                 else "index https://pypi.org/simple (uv's default)"]
        if self.extra_index_urls:
            parts.append("extra " + ", ".join(f"{u} ({o})" for u, o in self.extra_index_urls))
        if self.find_links:
            parts.append("find-links " + ", ".join(f"{u} ({o})" for u, o in self.find_links))
        return "; ".join(parts)

    def to_json(self) -> dict:
        return {"index_url": self.index_url[0] if self.index_url else None,
                "extra_index_urls": [u for u, _ in self.extra_index_urls],
                "find_links": [u for u, _ in self.find_links]}


def user_index_settings(env: Mapping[str, str] | None = None, pip_config: str | None = None,
                        index_url: str | None = None) -> IndexSettings:
    """The user's index settings as uv flags: uv's own variables (UV_DEFAULT_INDEX / UV_INDEX_URL, UV_INDEX /
    UV_EXTRA_INDEX_URL, UV_FIND_LINKS), then pip's (`pip config list`, which includes PIP_* variables; the
    variables themselves when pip cannot be asked). `index_url` (--index-url) replaces the primary index."""
    env = os.environ if env is None else env
    pip = _parse_pip_config(_pip_config(env) if pip_config is None else pip_config)
    for option, var in (("index-url", "PIP_INDEX_URL"), ("extra-index-url", "PIP_EXTRA_INDEX_URL"),
                        ("find-links", "PIP_FIND_LINKS")):
        if env.get(var):
            pip[option] = _words(env[var])
    primary = None
    if index_url:
        primary = (index_url, "--index-url")
    elif env.get("UV_DEFAULT_INDEX") or env.get("UV_INDEX_URL"):
        var = "UV_DEFAULT_INDEX" if env.get("UV_DEFAULT_INDEX") else "UV_INDEX_URL"
        primary = (env[var].strip(), var)
    elif pip.get("index-url"):
        primary = (pip["index-url"][0], "pip config")
    extras: dict[str, str] = {}
    for word in _words(env.get("UV_INDEX")):
        extras.setdefault(word.partition("=")[2] if "=" in word and "://" not in word.partition("=")[0]
                          else word, "UV_INDEX")
    for word in _words(env.get("UV_EXTRA_INDEX_URL")):
        extras.setdefault(word, "UV_EXTRA_INDEX_URL")
    for word in pip.get("extra-index-url", []):
        extras.setdefault(word, "pip config")
    links: dict[str, str] = {}
    for word in env.get("UV_FIND_LINKS", "").replace(",", " ").split():
        links.setdefault(word, "UV_FIND_LINKS")
    for word in pip.get("find-links", []):
        links.setdefault(word, "pip config")
    extras.pop(primary[0] if primary else "", None)
    return IndexSettings(primary, tuple(extras.items()), tuple(links.items()))


# --------------------------------------------------------------------------------------------------------- running uv
def _uv_env(offline: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONHOME")}
    env.update(NO_DOWNLOADS)
    if offline:
        env["UV_OFFLINE"] = "1"
    return env


def _reason(lines: Sequence[str]) -> str:
    """uv's error in one line: the last message before its hints, wrapped lines joined."""
    kept: list[str] = []
    for line in lines:
        text = line.strip().lstrip("×│╰─▶ ").strip()
        if text.startswith("hint:"):
            break
        if not text:
            continue
        if line.strip()[:1] in "×╰" or text.startswith(("error:", "cause:", "Caused by:")) or not kept:
            kept = [text]
        else:
            kept.append(text)
    reason = " ".join(kept)
    for prefix in ("error:", "cause:", "Caused by:"):
        reason = reason.removeprefix(prefix).strip()
    return reason or "no error message"


def _run_uv(cmd: list[str], env: Mapping[str, str], log: Log, what: str, timeout_s: float = UV_TIMEOUT_S) -> None:
    """Run uv with its output streamed to `log`; RuntimeBuildError with uv's last error line when it fails."""
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(env),
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=NEUTRAL_CWD, errors="replace")
    except OSError as exc:
        raise RuntimeBuildError(f"{what}: cannot run uv ({exc})") from None
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout_s, stop)
    timer.start()
    tail: deque[str] = deque(maxlen=60)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            log(f"  uv: {line.rstrip()}")
        code = proc.wait()
    finally:
        timer.cancel()
    if expired.is_set():
        raise RuntimeBuildError(f"{what}: uv ran past {timeout_s:.0f} s and was stopped")
    if code != 0:
        raise RuntimeBuildError(f"{what}: uv failed: {_reason(list(tail))}")


def _uv_output(cmd: list[str], env: Mapping[str, str], what: str, timeout_s: float = 600.0) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(env), timeout=timeout_s,
                              stdin=subprocess.DEVNULL, start_new_session=True, cwd=NEUTRAL_CWD, errors="replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeBuildError(f"{what}: cannot run uv ({exc})") from None
    if proc.returncode != 0:
        raise RuntimeBuildError(f"{what}: uv failed: {_reason(proc.stderr.splitlines())}")
    return proc.stdout


# -------------------------------------------------------------------------------------------------------------- build
def _check_inputs(runtime: Runtime, wheels_dir: Path | None, wheel_files: Sequence[Path]) -> None:
    if runtime.user_wheel and not wheel_files:
        raise RuntimeBuildError(f"runtime {runtime.name} installs a torch wheel you supply ({runtime.torch}*): "
                                f"name it with --wheel FILE (see {runtime.file})")
    for wheel in wheel_files:
        if not Path(wheel).is_file() or Path(wheel).suffix != ".whl":
            raise RuntimeBuildError(f"--wheel {wheel}: no such wheel file (a .whl)")
    if wheels_dir is not None and not Path(wheels_dir).is_dir():
        raise RuntimeBuildError(f"--wheels {wheels_dir}: no such folder of wheels")


def _probe_torch(python: Path) -> dict:
    try:
        proc = subprocess.run([str(python), "-I", "-c", _TORCH_PROBE], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL, start_new_session=True,
                              cwd=NEUTRAL_CWD)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        raise RuntimeBuildError(f"built interpreter {python} cannot report its torch ({exc})") from None


def _size(folder: Path) -> int:
    """Bytes of the regular files under `folder`, each inode once (uv hard-links from its cache)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen and not os.path.islink(os.path.join(root, name)):
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _freeze(uv: str, python: Path, env: Mapping[str, str]) -> list[str]:
    out = _uv_output([uv, "pip", "freeze", "--python", str(python)], env, "uv pip freeze")
    return [line.strip() for line in out.splitlines() if line.strip()]


def build_runtime(runtime: Runtime, cache_dir: Path, *, base_python: str | None = None,
                  wheels_dir: Path | None = None, wheel_files: Sequence[Path] = (), index_url: str | None = None,
                  offline: bool = False, rebuild: bool = False, log: Log = print) -> dict:
    """Build `runtime` into `<cache_dir>/runtimes/<name>/` and return its build record.

    One build of a name at a time (a file lock). A runtime already built is kept unless `rebuild`. The old record
    goes first, so a failed rebuild never leaves a runtime that looks built; the record is written last, after the
    built interpreter reported a torch that is the runtime's."""
    from filelock import FileLock, Timeout

    _check_inputs(runtime, wheels_dir, wheel_files)
    uv = find_uv()
    cache_dir = Path(cache_dir).resolve()  # uv runs in another folder
    folder = runtime_dir(cache_dir, runtime.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder.parent / f".{runtime.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"waiting for another build of runtime {runtime.name} to finish ({lock.lock_file})")
        lock.acquire()
    try:
        info = build_info(cache_dir, runtime.name)
        if info is not None and not rebuild and built_python(cache_dir, runtime.name):
            log(f"runtime {runtime.name} is already built at {folder} (torch {info.get('torch')}); "
                "--rebuild builds it again")
            return info
        return _build(runtime, folder, uv, base_python, wheels_dir, list(wheel_files), index_url, offline, log)
    finally:
        lock.release()


def _build(runtime: Runtime, folder: Path, uv: str, base_python: str | None, wheels_dir: Path | None,
           wheel_files: list[Path], index_url: str | None, offline: bool, log: Log) -> dict:
    base, base_version = find_base_python(runtime, base_python, log=log)
    env = _uv_env(offline)
    if wheels_dir is not None:
        source_args = ["--no-index", "--find-links", str(Path(wheels_dir).resolve())]
        indexes = None
        log(f"sources: the wheels in {Path(wheels_dir).resolve()} only (no index)")
    else:
        indexes = user_index_settings(env, index_url=index_url).with_runtime(runtime)
        source_args = indexes.args(env)
        log(f"sources: {indexes.describe()}" + (" (offline: uv's cache only)" if offline else ""))
    log(f"building runtime {runtime.name} in {folder} from Python {base_version} ({base})")
    (folder / RECORD).unlink(missing_ok=True)
    if folder.exists():
        shutil.rmtree(folder)
    _run_uv([uv, "venv", str(folder), "--python", base, "--no-python-downloads"], env, log,
            f"uv venv for runtime {runtime.name}")
    python = folder / "bin" / "python"
    wheels = [str(Path(w).resolve()) for w in wheel_files]
    try:
        _run_uv([uv, "pip", "install", "--python", str(python), *source_args, *runtime.requirements, *wheels], env,
                log, f"installing runtime {runtime.name}")
    except RuntimeBuildError as exc:
        if wheels_dir is None:
            raise
        raise RuntimeBuildError(f"{exc} (--wheels {wheels_dir}: `pytest-speedrun runtime wheels {runtime.name}` "
                                "lists what the folder needs)") from None
    probe = _probe_torch(python)
    if "error" in probe:
        raise RuntimeBuildError(f"runtime {runtime.name}: the built interpreter cannot import torch "
                                f"({probe['error']}); left unrecorded in {folder}")
    if not runtime.torch_matches(probe.get("torch")):
        raise RuntimeBuildError(f"runtime {runtime.name} wants torch {runtime.torch}* and the build has torch "
                                f"{probe.get('torch')}; left unrecorded in {folder}: fix the sources "
                                f"(--wheels / --wheel / --index-url) and rebuild")
    record = {
        "name": runtime.name,
        "python": str(python),
        "python_version": probe["python_version"],
        "base_python": base,
        "torch": probe["torch"],
        "cuda": probe.get("cuda"),
        "runtime_file": str(runtime.file),
        "requirements": list(runtime.requirements),
        "sources": {**(indexes.to_json() if indexes else {"index_url": None}),
                    "wheels_dir": str(Path(wheels_dir).resolve()) if wheels_dir is not None else None,
                    "wheel_files": wheels, "offline": offline},
        "packages": _freeze(uv, python, env),
        "uv": _uv_output([uv, "--version"], env, "uv --version").strip(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "size_bytes": _size(folder),
    }
    write_atomic(folder / RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
    log(f"built runtime {runtime.name}: torch {record['torch']} (CUDA {record['cuda'] or 'none'}), Python "
        f"{record['python_version']}, {human_size(record['size_bytes'])} in {folder}")
    return record


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


# ------------------------------------------------------------------------------------------------------------- wheels
def required_wheels(runtime: Runtime, *, python_version: str | None = None, platform: str = DEFAULT_PLATFORM,
                    index_url: str | None = None) -> list[str]:
    """The pinned `name==version` list a connected machine must download for `runtime` (uv pip compile against the
    user's indexes and the runtime's own). A user_wheel runtime's torch is not in it: that wheel is the user's."""
    uv = find_uv()
    env = _uv_env(offline=False)
    indexes = user_index_settings(env, index_url=index_url).with_runtime(runtime)
    cmd = [uv, "pip", "compile", "-", "--python-version", python_version or runtime.python, "--python-platform",
           platform, "--no-header", "--no-annotate", "--no-python-downloads", *indexes.args(env)]
    try:
        proc = subprocess.run(cmd, input="\n".join(runtime.requirements) + "\n", capture_output=True, text=True,
                              env=env, timeout=600, start_new_session=True, cwd=NEUTRAL_CWD, errors="replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeBuildError(f"resolving runtime {runtime.name}: cannot run uv ({exc})") from None
    if proc.returncode != 0:
        raise RuntimeBuildError(f"resolving runtime {runtime.name} ({indexes.describe()}): uv failed: "
                                f"{_reason(proc.stderr.splitlines())}")
    return [line.strip() for line in proc.stdout.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _pip_platforms(platform: str) -> list[str]:
    """pip's platform tags for uv's platform name: pip's --platform takes exact tags, so list the older
    manylinux tags a newer glibc also runs (the CUDA libraries' wheels are tagged manylinux2014)."""
    arch = platform.split("-")[0]
    if "linux" not in platform:
        return [platform]
    glibc = 28
    if "manylinux_2_" in platform:
        glibc = int(platform.rsplit("_", 1)[-1])
    tags = [f"manylinux_2_{g}_{arch}" for g in (glibc, 28, 27, 24, 17) if g <= glibc]
    return list(dict.fromkeys([*tags, f"manylinux2014_{arch}"]))


def download_hint(runtime: Runtime, python_version: str | None = None, platform: str = DEFAULT_PLATFORM) -> list[str]:
    """How to gather the pinned wheels on a connected machine and build from them on an air-gapped one."""
    version = python_version or runtime.python
    plats = " ".join(f"--platform {p}" for p in _pip_platforms(platform))
    extra = f" --extra-index-url {runtime.index}" if runtime.index else ""
    lines = [f"on a connected machine, save this list as FILE and run: pip download --only-binary=:all: --no-deps "
             f"--python-version {version} {plats}{extra} -d DIR -r FILE",
             f"then copy DIR to the node and run: pytest-speedrun runtime build {runtime.name} --wheels DIR"
             + (" --wheel TORCH.whl" if runtime.user_wheel else "")]
    if runtime.user_wheel:
        lines.append(f"runtime {runtime.name}'s torch ({runtime.torch}*) is a wheel you supply, with the triton it "
                     "requires (a nightly's pytorch-triton): neither is listed; name each with --wheel")
    return lines
