"""Repository-level pytest configuration.

In this repository, `pytest --speedrun-suite=...` runs the benchmark only: the unit tests under tests/ are
not collected unless named on the command line. Plain `pytest` runs the unit tests (and collects the tiny
suite's items, skipped without --speedrun-agent).
"""

from pathlib import Path

import pytest

TESTS = Path(__file__).parent / "tests"


def pytest_configure(config: pytest.Config) -> None:
    # pytest never asks pytest_ignore_collect about its initial paths, and without arguments those are the ini's
    # testpaths (tests/): drop them, so only the suite's items are collected.
    if config.getoption("speedrun_suite") and config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        config.args = []


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path == TESTS and config.getoption("speedrun_suite"):
        explicit = any(Path(a.split("::")[0]).resolve().is_relative_to(TESTS) for a in config.invocation_params.args
                       if not a.startswith("-"))
        return None if explicit else True
    return None
