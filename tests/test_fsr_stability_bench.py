"""benchmarks/fsr_stability.py's criteria arithmetic (issue 20) on made-up records. Nothing here times anything."""

from __future__ import annotations

from types import ModuleType

import pytest

from fakes import load_benchmark


@pytest.fixture(scope="module")
def fs() -> ModuleType:
    return load_benchmark("fsr_stability")


def _rec(task: str, fsr: float, low: float, high: float, **kw) -> dict:
    return {"task": task, "fsr": fsr, "fsr_low": low, "fsr_high": high, **kw}


def test_the_99_percent_interval_widens_each_side_by_z99_over_z95(fs: ModuleType) -> None:
    low, high = fs.interval99(_rec("t", 1.0, 0.8, 1.1))
    k = 2.575829 / 1.959964
    assert low == pytest.approx(1.0 - 0.2 * k) and high == pytest.approx(1.0 + 0.1 * k)


def test_an_unflagged_confident_miss_fails_criterion_1_and_a_flagged_one_does_not(fs: ModuleType) -> None:
    miss = _rec("tiny04", 0.51, 0.25, 0.78)  # the trust issue's unflagged baseline miss
    sessions = [{"label": "cold0-baseline", "agent": "baseline", "records": [miss]}]
    assert "NOT met (1 of 1: cold0-baseline/tiny04 0.51)" in fs.criteria(sessions)[0]
    sessions[0]["records"] = [dict(miss, disturbed="the machine ran 24% slower")]
    assert fs.criteria(sessions)[0].startswith("criterion 1, no unflagged item whose 99% interval excludes the "
                                               "expected FSR: met")


def test_coverage_per_agent_and_the_flagged_share_leave_the_hog_session_out(fs: ModuleType) -> None:
    ok = [_rec(f"tiny0{i}", 1.0, 0.9, 1.1) for i in range(1, 5)]
    sessions = [{"label": "cold0-oracle", "agent": "oracle", "records": ok[:3] + [_rec("tiny04", 1.3, 1.2, 1.4)]},
                {"label": "hog-oracle", "agent": "oracle", "records": [dict(r, disturbed="busy") for r in ok]}]
    lines = fs.criteria(sessions)
    assert "criterion 2, oracle: 95% intervals containing 1: 88% of 8 (>= 90%: NOT met)" in lines
    assert lines[-1] == "criterion 3, flagged in sessions with nothing beside them: 0% of 4 (<= 25%: met)"


def test_the_advice_note_of_a_wide_interval_is_not_a_flag(fs: ModuleType) -> None:
    """Only a `disturbed` reason flags an item: an interval's precision advice neither excuses a confident miss
    (criterion 1) nor counts as flagged (criterion 3)."""
    advice = "tiny04[h0-s0]: FSR 0.51 ± 0.27 at 2.00% run-to-run CV; --speedrun-repeats=3 would bring it under ±0.1"
    miss = _rec("tiny04", 0.51, 0.25, 0.78, note=advice)
    sessions = [{"label": "cold0-baseline", "agent": "baseline", "records": [miss, _rec("tiny03", 0.0, -0.3, 0.3,
                                                                                        note=advice)]}]
    lines = fs.criteria(sessions)
    assert "NOT met (1 of 2: cold0-baseline/tiny04 0.51)" in lines[0]
    assert lines[-1] == "criterion 3, flagged in sessions with nothing beside them: 0% of 2 (<= 25%: met)"
