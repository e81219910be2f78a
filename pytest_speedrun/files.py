"""Small helpers every step shares: the package's own folder, atomic file writes, the thread variables, the TOML
reader, and the lazy public names of the subpackages. (execution/pump.py keeps its own atomic write: it runs
by path, with the standard library only.)"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["PACKAGE_DIR", "THREAD_VARS", "lazy_exports", "thread_env", "tomllib", "write_atomic"]

PACKAGE_DIR = Path(__file__).resolve().parent  # pytest_speedrun/ (its data: reference/, suites/ in a wheel)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # what the BLAS/OpenMP pools read


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `path` whole or not at all: a sibling temporary file (named by the writing process), then a
    rename, so a reader or a crash never sees half a file and two writers never share a temporary."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


def thread_env(threads: int) -> dict[str, str]:
    """The variables that size a process's CPU thread pools."""
    return {var: str(threads) for var in THREAD_VARS}


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` (PEP 562) for a subpackage's `__init__`: `package.Name` imports the submodule that
    defines it on first use. The subpackages state their public names (`__all__`) without importing every step
    of the pipeline (and their optional dependencies) when one of them is used."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return __getattr__
