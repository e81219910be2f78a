"""Runtimes: the Python-plus-torch stack a task runs in, as a suite declares it.

A record is code written for one torch. A task names its runtime in its manifest (`[launch] runtime = NAME`);
the suite defines each name in `runtimes/NAME.toml` beside its manifests. Every run of the task (the agent's
solution, the start and target records, calibration, smoke, repeats) then uses that one runtime, so an FSR
compares scripts, not torch versions. A task that names none runs in the interpreter pytest runs in (the tiny
suite's records run on any recent torch).

This module only says *what* a runtime is. `execution/runtime.py` builds one (uv, into the cache) or finds the
interpreter a user mapped to it, and decides per item what runs where.

Schema of `runtimes/NAME.toml`:

    description = "..."          # one line: why this runtime, where its pins come from
    python = "3.12"              # the base interpreter's major.minor that builds it
    torch = "2.7.1"              # the prefix `torch.__version__` must start with in the built runtime
    requirements = ["torch==2.7.1", "triton==3.3.1", "numpy==1.26.4"]   # what uv installs (may be empty)
    index = "https://download.pytorch.org/whl/cu126"   # optional: the index of the CUDA variant
    cuda = "12.6"                # optional: the CUDA the torch wheel is built for (the doctor checks the driver)
    user_wheel = false           # true: torch is a wheel file the user supplies (expired nightlies)
    compat = ["fp8-fake-strides"]  # optional: compat fixes applied in this runtime (tasks/compat.py)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_speedrun.errors import TaskError
from pytest_speedrun.files import tomllib

RUNTIMES_DIR = "runtimes"  # beside a suite's manifests
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_PYTHON = re.compile(r"^3\.\d+$")
# key -> (types, required, human type name)
_SCHEMA: dict[str, tuple[tuple[type, ...], bool, str]] = {
    "description": ((str,), True, "a string"),
    "python": ((str,), True, "a string such as \"3.12\""),
    "torch": ((str,), True, "a string such as \"2.7.1\""),
    "requirements": ((list,), True, "a list of requirement strings"),
    "index": ((str,), False, "a URL string"),
    "cuda": ((str,), False, "a string such as \"12.6\""),
    "user_wheel": ((bool,), False, "true or false"),
    "compat": ((list,), False, "a list of compat fix names"),
}


@dataclass(frozen=True)
class Runtime:
    """One runtime as a suite defines it."""

    name: str
    description: str
    python: str
    torch: str
    requirements: tuple[str, ...]
    file: Path
    index: str | None = None
    cuda: str | None = None
    user_wheel: bool = False
    compat: tuple[str, ...] = ()

    def torch_matches(self, version: str | None) -> bool:
        """Whether an interpreter's `torch.__version__` is this runtime's torch (a prefix match: `2.7.1` takes
        `2.7.1+cu126`, `2.7.0.dev202501` takes every nightly of January 2025)."""
        return bool(version) and str(version).startswith(self.torch)


def _fail(path: Path, key: str, message: str) -> TaskError:
    return TaskError(f"{path}: key '{key}': {message}")


def load_runtime(path: Path) -> Runtime:
    """Load and validate one runtime file; TaskError naming the file and key on any problem."""
    path = Path(path)
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TaskError(f"{path}: cannot read runtime file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{path}: invalid TOML: {exc}") from None
    for key in raw:
        if key not in _SCHEMA:
            raise _fail(path, key, f"unknown key (known keys: {', '.join(sorted(_SCHEMA))}); remove or rename it")
    for key, (types, required, tname) in _SCHEMA.items():
        if key not in raw:
            if required:
                raise _fail(path, key, f"missing; add it ({tname})")
            continue
        value = raw[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise _fail(path, key, f"expected {tname}, got {type(value).__name__} {value!r}")
    name = path.stem
    if not _NAME.match(name):
        raise TaskError(f"{path}: a runtime's file name is its name: letters, digits and . _ + - only")
    if not _PYTHON.match(raw["python"]):
        raise _fail(path, "python", f"{raw['python']!r} is not a major.minor version such as \"3.12\"")
    for key in ("requirements", "compat"):
        if any(not isinstance(x, str) or not x.strip() for x in raw.get(key, [])):
            raise _fail(path, key, f"expected a list of non-empty strings, got {raw[key]!r}")
    if not raw["requirements"] and not raw.get("user_wheel", False):
        raise _fail(path, "requirements", "empty: list what uv installs, or set user_wheel = true")
    return Runtime(name=name, description=raw["description"], python=raw["python"], torch=raw["torch"],
                   requirements=tuple(raw["requirements"]), file=path.resolve(), index=raw.get("index"),
                   cuda=raw.get("cuda"), user_wheel=raw.get("user_wheel", False), compat=tuple(raw.get("compat", [])))


def runtime_file(suite_dir: Path, name: str) -> Path:
    return Path(suite_dir) / RUNTIMES_DIR / f"{name}.toml"


def suite_runtimes(suite_dir: Path) -> dict[str, Runtime]:
    """Every runtime a suite defines, by name (empty for a suite without a `runtimes/` folder)."""
    folder = Path(suite_dir) / RUNTIMES_DIR
    return {p.stem: load_runtime(p) for p in sorted(folder.glob("*.toml"))} if folder.is_dir() else {}


def task_runtime(task: Any) -> Runtime | None:
    """The runtime a task states (None: the task runs in the current interpreter)."""
    name = task.launch.runtime
    return None if name is None else load_runtime(runtime_file(task.manifest.parent, name))
