"""Shared fixtures. `pytester` drives real pytest runs for plugin behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import write_suite

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache (tiny corpus, calibration) for the whole test session: the corpus is generated once."""
    return tmp_path_factory.mktemp("speedrun-cache")


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    """The fake 'mini' suite inside the pytester directory."""
    return write_suite(pytester.path / "suites")


@pytest.fixture
def run(pytester: pytest.Pytester, suite: Path, cache_dir: Path):
    """Run pytest on the mini suite (in process, or in a subprocess for signals and xdist)."""
    def _run(*args: str, subprocess: bool = False) -> pytest.RunResult:
        # "--opt=value" forms: pytest would take a separate existing-path value into its rootdir guess.
        full = (f"--speedrun-suite={suite}", f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider", *args)
        return pytester.runpytest_subprocess(*full) if subprocess else pytester.runpytest(*full)
    return _run
