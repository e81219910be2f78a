"""Smoke mode: a few steps of each start script on generated shards, rewritten only on a copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_speedrun.errors import SpeedrunError
from pytest_speedrun.pipeline.smoke import shorten
from pytest_speedrun.tasks.manifest import find_suite

pytest_plugins = ["pytester"]


@pytest.mark.parametrize("line", [
    "    num_iterations : int = 5100 # number of iterations to run",
    "num_iterations = 24576",
    "parser.add_argument('--num_iterations', type=int, default=9536, help='steps')",
])
def test_the_iteration_count_is_shortened_in_every_form(line: str) -> None:
    assert "20" in shorten(f"import os\n{line}\nprint(1)\n", 20).splitlines()[1]
    assert shorten(f"{line}\n", 20).count("20") == 1


def test_a_script_without_an_iteration_count_is_a_clear_error() -> None:
    with pytest.raises(SpeedrunError, match="cannot find the script's iteration count"):
        shorten("print('no loop here')\n")


@pytest.mark.slow
def test_smoke_runs_the_start_script_briefly_without_an_agent(pytester: pytest.Pytester, cache_dir: Path) -> None:
    record = find_suite("tiny") / "records" / "record_4.py"
    before = record.read_text()
    result = pytester.runpytest_subprocess("--speedrun-suite=tiny", "--speedrun-smoke", "-k", "tiny04",
                                           f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["tiny04[[]h0-s0[]]*passed (smoke)*", "smoke: 1/1 start script(s) ran*"])
    (rec,) = [json.loads(ln) for ln in (pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()]
    assert rec["mode"] == "smoke" and rec["steps"] == 20 and rec["fsr"] is None
    assert record.read_text() == before  # the rewrite happened on a copy
