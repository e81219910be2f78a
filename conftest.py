"""Repository-level pytest configuration.

In this repository, `pytest --speedrun-suite=...` runs the benchmark only: the unit tests under tests/ are
not collected unless named on the command line. Plain `pytest` runs the unit tests (and collects the tiny
suite's items, skipped without --speedrun-agent).

The tests marked `slow` (real training runs end to end: the attack corpus, the tiny suite's sessions, torchrun;
about 30 minutes on a 2-core machine) are skipped unless `--run-slow` is given or `-m` names them
(`pytest -m slow`). `.ci/run` runs them after the default run, so CI exercises both.
"""

import re
from pathlib import Path

import pytest

TESTS = Path(__file__).parent / "tests"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked slow (real training end to end, about 30 minutes here)")


def _runs_slow(config: pytest.Config) -> bool:
    return bool(config.getoption("run_slow")) or re.search(r"\bslow\b", config.option.markexpr or "") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _runs_slow(config):
        return
    skip = pytest.mark.skip(reason="slow end-to-end run: add --run-slow, or -m slow for these alone (.ci/run does)")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


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
