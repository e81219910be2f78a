"""Small helpers every step shares: the package's own folder and the lazy public names of the subpackages."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent  # pytest_speedrun/ (its data: reference/, suites/ in a wheel)


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` (PEP 562) for a subpackage's `__init__`: `package.Name` imports the submodule that
    defines it on first use. The subpackages state their public names (`__all__`) without importing every step
    of the pipeline (and their optional dependencies) when one of them is used."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return __getattr__
