"""The repository's conftest: the tests marked slow are opt-in, so the default `pytest` stays short."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT_CONFTEST = Path(__file__).parent.parent / "conftest.py"


@pytest.fixture
def repo(pytester: pytest.Pytester) -> pytest.Pytester:
    shutil.copy(ROOT_CONFTEST, pytester.path / "conftest.py")
    pytester.makeini("[pytest]\nmarkers =\n    slow: end-to-end\n")
    pytester.makepyfile(test_two="""
        import pytest

        def test_quick():
            pass

        @pytest.mark.slow
        def test_end_to_end():
            pass
    """)
    return pytester


def test_the_slow_tests_are_skipped_by_default_saying_how_to_run_them(repo: pytest.Pytester) -> None:
    result = repo.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*slow end-to-end run: add --run-slow*"])


@pytest.mark.parametrize("args, outcomes", [
    (("--run-slow",), {"passed": 2}),
    (("-m", "slow"), {"passed": 1, "deselected": 1}),
    (("-m", "not slow"), {"passed": 1, "deselected": 1}),
])
def test_run_slow_or_a_mark_expression_naming_them_runs_the_slow_tests(repo: pytest.Pytester, args, outcomes) -> None:
    repo.runpytest("-p", "no:cacheprovider", *args).assert_outcomes(**outcomes)
