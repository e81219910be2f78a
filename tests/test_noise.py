"""Timing noise arithmetic: pooled spread, FSR intervals, the runs that would narrow them, the stale check."""

from __future__ import annotations

import math
import random

import pytest

from pytest_speedrun.results import noise
from pytest_speedrun.results.noise import Spread


def test_pooled_spread_is_the_relative_sd_around_each_scripts_own_mean() -> None:
    # Two scripts at very different speeds, the same 1% relative jitter: the pool sees 1%, not their difference.
    a = [100_000 * math.exp(e) for e in (-0.01, 0.0, 0.01)]
    b = [10_000 * math.exp(e) for e in (-0.01, 0.01)]
    spread = noise.pooled_spread([a, b, [55_000.0]])
    assert spread is not None and spread.df == 3
    assert spread.cv == pytest.approx(math.sqrt((2e-4 + 2e-4) / 3), rel=1e-4)  # rounding: 1e-9 of it
    assert noise.pooled_spread([[1.0], [2.0]]) is None


def test_identical_logged_times_keep_the_spread_of_their_rounding() -> None:
    """Whole-millisecond times that agree exactly (a fake 152 ms script) have a spread of at least the rounding,
    never zero: an interval of ± 0.00 would claim a precision the log does not have."""
    spread = noise.pooled_spread([[152.0] * (noise.MIN_DF + 1)])
    assert spread is not None and spread.cv == pytest.approx(math.sqrt(1 / 12) / 152.0, rel=1e-9)
    few = noise.pooled_spread([[152.0, 152.0, 152.0]])
    assert few is not None and few.measured_cv == pytest.approx(math.sqrt(1 / 12) / 152.0, rel=1e-9)


def test_t_quantile_matches_tables() -> None:
    assert noise.t_quantile(None) == pytest.approx(1.95996, abs=1e-4)
    assert noise.t_quantile(2) == pytest.approx(4.3027, abs=1e-3)
    assert noise.t_quantile(10) == pytest.approx(2.2281, abs=1e-3)


def test_fsr_interval_matches_a_simulation_of_the_same_noise() -> None:
    a, b, cv = 30_000.0, 18_000.0, 0.01
    rng = random.Random(7)
    draws = []
    for _ in range(20_000):
        ta, tb, tx = (t * math.exp(rng.gauss(0, cv)) for t in (a, b, b))
        draws.append((ta - tx) / (ta - tb))
    sd = (sum((d - 1) ** 2 for d in draws) / len(draws)) ** 0.5
    half = noise.fsr_half_width(b, 1, a, 1, b, 1, Spread(cv, None))
    assert half == pytest.approx(1.96 * sd, rel=0.05)


def test_more_runs_narrow_the_interval_and_contention_widens_it_upwards() -> None:
    spread = Spread(0.01, 20)
    one = noise.fsr_interval(1.0, 18_000, 1, 30_000, 1, 18_000, 1, spread)
    many = noise.fsr_interval(1.0, 18_000, 5, 30_000, 5, 18_000, 5, spread)
    assert many.half < one.half / 2
    slowed = noise.fsr_interval(1.0, 18_000, 1, 30_000, 1, 18_000, 1, spread, slowdown=0.1)
    assert slowed.low == one.low and slowed.high > one.high + 0.1


def test_runs_for_finds_the_cheapest_plan_or_says_none_exists() -> None:
    # An amplification of 43 (the paper's task20): at 1% CV no plan up to 10 runs reaches ±0.1.
    assert noise.runs_for(0.1, 97_000, 100_000, 97_700, Spread(0.01, None)) is None
    reps, cal = noise.runs_for(0.1, 18_000, 30_000, 18_000, Spread(0.05, None))
    assert noise.fsr_half_width(18_000, reps, 30_000, cal, 18_000, cal, Spread(0.05, None)) < 0.1
    assert noise.runs_for(0.1, 18_000, 30_000, 18_000, Spread(0.005, None)) == (1, 1)


def test_advice_only_for_intervals_wider_than_0_2() -> None:
    narrow = noise.Interval(0.9, 1.1)
    assert noise.advice("t", narrow, 1.0, 18_000, 30_000, 18_000, Spread(0.01, 9)) == ""
    wide = noise.Interval(0.6, 1.4)
    line = noise.advice("t", wide, 1.0, 18_000, 30_000, 18_000, Spread(0.05, 9))
    assert line.startswith("t: FSR 1.00 ± 0.40 at 5.00% run-to-run CV (measured, 9 degrees of freedom)")
    assert "--speedrun-repeats=" in line
    hopeless = noise.advice("t", wide, 1.0, 97_000, 100_000, 97_700, Spread(0.01, None))
    assert "no number of repeats or calibration runs" in hopeless and "(assumed)" in hopeless


def test_shift_check_holds_for_the_same_machine_and_catches_a_slowdown() -> None:
    spread = Spread(0.008, 12)
    cached = [10_000 * math.exp(e) for e in (-0.008, 0.0, 0.008, 0.004, -0.004)]
    same = [10_000 * math.exp(e) for e in (0.004, -0.006, 0.001)]
    assert not noise.shift_check(same, cached, spread).moved
    slow = [t * 1.03 for t in same]
    check = noise.shift_check(slow, cached, spread)
    assert check.moved and check.ratio == pytest.approx(1.03 * math.exp(-1e-3), rel=1e-3)
    assert "moved" in check.describe()


def test_disturbance_names_what_slowed_a_run() -> None:
    assert noise.disturbance(0.0, {"others_busy": 0.05, "steal": 0.0}) == ""
    assert "waited 5.0%" in noise.disturbance(0.05, {})
    assert "other cores were 90% busy" in noise.disturbance(0.0, {"others_busy": 0.9})
    assert noise.slowdown_bound(0.0, {"others_busy": 0.05}) == 0.0
    assert noise.slowdown_bound(0.0, {"others_busy": 1.0}) == pytest.approx(noise.BUSY_SLOWDOWN)


def test_the_stale_check_tolerance_is_clamped_between_1_5_and_2_percent() -> None:
    cached = [10_000.0, 10_050.0, 9_950.0]
    wild = noise.shift_check([10_120.0] * 3, cached, Spread(0.05, 2))  # a huge spread estimate: still 2% at most
    assert wild.tolerance == 0.02 and not wild.moved
    assert noise.shift_check([10_250.0] * 3, cached, Spread(0.05, 2)).moved
    calm = noise.shift_check([10_120.0] * 3, cached, Spread(0.001, 30))  # a tiny spread: never below 1.5%
    assert calm.tolerance == 0.015 and not calm.moved


def test_the_readme_precision_table_is_what_the_arithmetic_gives() -> None:
    from pathlib import Path

    from pytest_speedrun.tasks.manifest import find_suite, load_suite

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    rows = noise.precision_rows(load_suite(find_suite("nanogpt")))
    assert len(rows) == 19 and all(row in readme for row in rows)
    assert "task20 | 20 → 21 | 42.7 | ±0.94 | none" in "\n".join(rows)


def test_where_a_witness_stands_it_and_not_the_cpu_probe_says_whether_the_machine_moved() -> None:
    """The probe 20% slow and 20% fast against the references' flags an item without a witness and widens its
    interval; beside a witness that agrees (a run of its own or a reused calibration run) it is not consulted.
    The run queue flags either way, and a witness that gave no time leaves the probe in charge."""
    ref_probe, slow, fast = 0.015, {"probe_s": 0.018}, {"probe_s": 0.012}
    runs = [(0.0, slow), (0.0, fast)]
    spread = Spread(0.03, 4)
    own = noise.Witness(ms=1010.0, reference_ms=1000.0, n_reference=3, record=1)
    reused = noise.Witness(ms=1000.0, reference_ms=1000.0, n_reference=3, record=1, reused=True)
    failed = noise.Witness(ms=1000.0, reference_ms=1000.0, n_reference=3, record=1, failed="crashed (exit 1)")
    check = noise.witness_check(own, spread)
    assert not check.moved

    why, slowdown, faster = noise.judge_machine(runs, ref_probe, None, None)
    assert "20% slower" in why and "the pump's CPU probe" in why
    assert (slowdown, faster) == (pytest.approx(0.4), pytest.approx(0.4))
    assert noise.judge_machine(runs, ref_probe, own, check) == ("", 0.0, 0.0)
    assert noise.judge_machine(runs, ref_probe, reused, None) == ("", 0.0, 0.0)

    queued = noise.judge_machine([(0.05, slow)], ref_probe, own, check)
    assert "waited 5.0% of its time" in queued[0] and queued[1] == pytest.approx(0.05)
    why, slowdown, _ = noise.judge_machine(runs, ref_probe, failed, None)
    assert "the pump's CPU probe" in why and "gave no time: crashed (exit 1)" in why and slowdown > 0


def test_a_machine_that_ran_slower_or_faster_than_for_its_references_is_said_so_and_widens_the_interval() -> None:
    ref_probe = 0.015
    assert noise.disturbance(0.0, {"probe_s": 0.0153}, ref_probe) == ""  # 2%: within the probe's own noise
    slow = noise.disturbance(0.0, {"probe_s": 0.018}, ref_probe)
    assert "ran 20% slower than when the references were measured" in slow
    assert "faster" in noise.disturbance(0.0, {"probe_s": 0.012}, ref_probe)
    assert noise.slowdown_bound(0.0, {"probe_s": 0.018}, ref_probe) == pytest.approx(0.4)
    assert noise.disturbance(0.0, {"probe_s": 0.018}, None) == ""  # no reference probe: nothing to compare
    base = noise.fsr_interval(1.0, 18_000, 1, 30_000, 1, 18_000, 1, Spread(0.01, 9))
    down = noise.fsr_interval(1.0, 18_000, 1, 30_000, 1, 18_000, 1, Spread(0.01, 9), speedup=0.2)
    assert down.high == base.high and down.low == pytest.approx(base.low - 0.3)


def test_a_spread_from_few_runs_never_claims_less_than_the_assumed_one() -> None:
    """Three back-to-back runs that agreed within 0.5% (2 degrees of freedom) are not a measurement of a 0.5%
    spread between runs minutes apart: under MIN_DF the spread is floored at ASSUMED_CV and says so. At MIN_DF or
    with a larger estimate the measurement stands."""
    close = [10_000.0, 10_046.0, 9_954.0]
    few = noise.pooled_spread([close])
    assert few is not None and few.df == 2 and few.cv == noise.ASSUMED_CV
    assert few.measured_cv == pytest.approx(0.0046, abs=2e-4)
    assert "1.00% run-to-run CV (measured, 2 degrees of freedom; 0.46% raised to the assumed 1.0%" in few.describe()
    many = noise.pooled_spread([close] * 5)  # 10 degrees of freedom
    assert many is not None and many.df == noise.MIN_DF and many.cv == pytest.approx(few.measured_cv, rel=1e-2)
    assert many.measured_cv is None and "raised" not in many.describe()
    wide = noise.pooled_spread([[10_000.0, 10_400.0, 9_600.0]])
    assert wide is not None and wide.cv > noise.ASSUMED_CV and wide.measured_cv is None
    base = noise.fsr_half_width(8_000, 1, 10_000, 1, 7_000, 1, Spread(few.measured_cv, 2))
    assert noise.fsr_half_width(8_000, 1, 10_000, 1, 7_000, 1, few) > 2 * base
