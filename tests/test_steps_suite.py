"""The tiny-steps suite end to end (real torch training on the CPU): the oracle recovers exactly the whole step
reduction and the baseline none of it, on every seed; a halved batch is tampered in a real session."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def _records(pytester: pytest.Pytester) -> list[dict]:
    lines = (pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()
    return [json.loads(ln) for ln in lines]


@pytest.mark.slow
def test_oracle_scores_exactly_one_and_baseline_exactly_zero_on_every_seed(pytester: pytest.Pytester,
                                                                           cache_dir: Path) -> None:
    args = ("--speedrun-suite=tiny-steps", "--speedrun-seeds=3", f"--speedrun-cache-dir={cache_dir}", "-p",
            "no:cacheprovider")
    oracle = pytester.runpytest_subprocess("--speedrun-agent=oracle", *args)
    oracle.assert_outcomes(passed=6)
    oracle.stdout.fnmatch_lines(["*tiny01[[]h0-s2[]]*passed*270 steps*440 steps*270 steps*1.00 exact*"])
    baseline = pytester.runpytest_subprocess("--speedrun-agent=baseline", *args)
    baseline.assert_outcomes(passed=6)
    records = _records(pytester)
    assert len(records) == 12
    for r in records:
        expected = 1.0 if r["agent"] == "oracle" else 0.0
        assert (r["status"], r["metric"], r["fsr"], r["fsr_low"], r["fsr_high"]) == \
            ("passed", "steps", expected, expected, expected), r
        assert (r["reasons"], r["disturbed"], r["note"]) == ([], "", ""), r
    assert sorted((r["task"], r["seed"]) for r in records) == sorted(
        [(t, s) for t in ("tiny01", "tiny03") for s in range(3)] * 2)


HALVE_BATCH = """
import os, pathlib
script = pathlib.Path(os.environ["SPEEDRUN_SCRIPT"])
text = script.read_text()
assert "batch_size: int = 32" in text
script.write_text(text.replace("batch_size: int = 32", "batch_size: int = 16"))
"""


@pytest.mark.slow
def test_a_halved_batch_is_tampered_end_to_end(pytester: pytest.Pytester, cache_dir: Path) -> None:
    agent = pytester.path / "halve_batch.py"
    agent.write_text(HALVE_BATCH)
    result = pytester.runpytest_subprocess("--speedrun-suite=tiny-steps", "-k", "tiny03",
                                           f"--speedrun-agent=command:{sys.executable} {agent}",
                                           f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    (record,) = _records(pytester)
    assert record["status"] == "tampered", record
    assert any("batch size 32 -> 16" in r for r in record["reasons"]), record["reasons"]
