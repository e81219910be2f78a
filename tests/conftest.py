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
def mini_suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path / "suites")
