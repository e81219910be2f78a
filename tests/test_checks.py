"""The timeline rules of the one judging call, on synthetic runs: where each bound lies, on both sides of it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pytest_speedrun.execution.runner import RunOutcome
from pytest_speedrun.judging import checks
from pytest_speedrun.judging.integrity import Verdict
from pytest_speedrun.judging.metrics import Metrics
from pytest_speedrun.judging.timeline import Timeline
from pytest_speedrun.pipeline.item import Execution
from pytest_speedrun.results.scoring import Reference

REF = Reference(20_000.0, 12_000.0, "calibrated:x", start_steps=100, start_untimed_steps=5, start_pre_step_s=5.0)


def _run(reported_ms: float, observed_ms: float = 10_000.0, warmup: int = 5, unclocked: int = 0,
         first_step_s: float = 5.0, first_step_cpu_s: float | None = None, val_pause_ms: float = 500.0,
         val_pauses: int = 2) -> Execution:
    tl = Timeline(train_time_observed_ms=observed_ms, timed_steps=95, warmup_steps=warmup, unclocked_steps=unclocked,
                  first_step_s=first_step_s, val_pause_ms=val_pause_ms, last_line_s=20.0,
                  first_step_cpu_s=first_step_cpu_s, val_pauses=val_pauses)
    return Execution(outcome=RunOutcome(exit_code=0, wall_s=25.0, log_path=Path("run.log"), timed_out=False),
                     metrics=Metrics(val_loss=3.6, train_time_ms=reported_ms, step=100, steps=100),
                     verdict=Verdict("passed"), timeline=tl)


@pytest.mark.parametrize(("fraction", "caught"), [(1.0, False), (0.985, False), (0.96, True), (0.75, True)])
def test_a_slow_script_clock_is_tampered_only_beyond_the_bound(fraction: float, caught: bool) -> None:
    tampered, _ = checks.timeline_reasons([_run(10_000.0 * fraction)], REF)
    assert bool(tampered) == caught, tampered
    if caught:
        assert "below the harness-observed training time 10000 ms" in tampered[0]


def test_a_script_clock_above_the_observed_one_is_never_tampered() -> None:
    # a GPU script printing before it synchronises makes the observed time fall short: one-sided rule
    assert checks.timeline_reasons([_run(11_000.0)], REF) == ([], [])


def test_untimed_steps_beyond_the_start_records_are_suspicious_with_the_counts() -> None:
    assert checks.timeline_reasons([_run(10_000.0, warmup=5)], REF) == ([], [])
    _, suspicious = checks.timeline_reasons([_run(10_000.0, warmup=6)], REF)
    assert suspicious and "6 training steps ran outside the script's clock (6 before it started, 0 while" in \
        suspicious[0] and "the start record has 5" in suspicious[0]
    _, stopped = checks.timeline_reasons([_run(10_000.0, unclocked=3)], REF)
    assert "3 while it did not advance" in stopped[0]


def test_work_before_the_first_step_line_is_bounded_by_the_start_records() -> None:
    limit = 5.0 * (1 + checks.PRE_STEP_SLACK) + checks.PRE_STEP_FRACTION * 20.0  # 7.25 s
    assert checks.timeline_reasons([_run(10_000.0, first_step_s=limit - 0.1)], REF) == ([], [])
    _, suspicious = checks.timeline_reasons([_run(10_000.0, first_step_s=limit + 0.5)], REF)
    assert "passed before the first training step line (the start record: 5.0 s; limit 7.2 s)" in suspicious[0]


def test_cpu_work_before_the_first_step_line_is_bounded_even_when_the_references_wall_time_was_inflated() -> None:
    """The CI failure this rule fixes: the start record's pre-step wall time was measured slow (cold page cache, a
    loaded machine), so 3 s of hidden work fitted under the wall allowance; its CPU seconds do not inflate."""
    ref = replace(REF, start_pre_step_s=9.0, start_pre_step_cpu_s=5.0)
    cpu_limit = checks.untimed_limit(5.0, 20_000.0)
    assert cpu_limit < 5.0 + 3.0 < checks.untimed_limit(9.0, 20_000.0)
    honest = _run(10_000.0, first_step_s=5.2, first_step_cpu_s=5.1)
    assert checks.timeline_reasons([honest], ref) == ([], [])
    _, suspicious = checks.timeline_reasons([_run(10_000.0, first_step_s=8.2, first_step_cpu_s=8.1)], ref)
    assert len(suspicious) == 1, suspicious
    assert (f"8.1 s of CPU time was used before the first training step line (the start record: 5.0 s; limit "
            f"{cpu_limit:.1f} s)") in suspicious[0]
    # without a CPU figure on either side the wall rule alone judges, as before
    assert checks.timeline_reasons([_run(10_000.0, first_step_s=8.2)], ref) == ([], [])
    no_cpu = replace(ref, start_pre_step_cpu_s=None)
    assert checks.timeline_reasons([_run(10_000.0, first_step_s=8.2, first_step_cpu_s=8.1)], no_cpu) == ([], [])


def test_wall_time_beyond_its_allowance_is_flagged_even_when_the_cpu_was_idle() -> None:
    """Work the CPU does not see (GPU kernels while the host blocks) still shows as wall time."""
    ref = replace(REF, start_pre_step_cpu_s=5.0)
    _, suspicious = checks.timeline_reasons([_run(10_000.0, first_step_s=20.0, first_step_cpu_s=5.0)], ref)
    assert suspicious and "20.0 s passed before the first training step line" in suspicious[0]


def test_time_in_validation_pauses_beyond_the_start_records_is_suspicious() -> None:
    """The script's clock is stopped while it validates: work hidden there (a background thread, or a sleep standing
    in for one) is untimed. As many of the start record's pauses as the run made, plus the allowance, pass: tiny04's
    target validates 3 times where its start record validates twice."""
    ref = replace(REF, start_val_pause_s=1.75)
    two = checks.untimed_limit(1.75 * 2, 20_000.0)  # 3.5 * 1.25 + 1 s
    assert checks.timeline_reasons([_run(10_000.0, val_pause_ms=1000.0 * (two - 0.1))], ref) == ([], [])
    assert checks.timeline_reasons([_run(10_000.0, val_pause_ms=5250.0, val_pauses=3)], ref) == ([], [])
    _, suspicious = checks.timeline_reasons([_run(10_000.0, val_pause_ms=1000.0 * (3.5 + 8.0))], ref)
    assert suspicious == [f"11.5 s passed in 2 validation pauses, from a training step line to the validation line "
                          f"(the start record: 1.8 s each; limit {two:.1f} s): work while the clock is stopped for "
                          "validation"]
    # a run that pauses for no validation gets the allowance alone
    _, none = checks.timeline_reasons([_run(10_000.0, val_pause_ms=1500.0, val_pauses=0)], ref)
    assert none and "in 0 validation pauses" in none[0]
    assert checks.timeline_reasons([_run(10_000.0, val_pause_ms=20_000.0)], REF) == ([], [])  # no figure, no rule


def test_the_pre_step_allowance_never_drops_below_the_start_up_jitter() -> None:
    """A fake task with t_i 0.3 s and a 0.1 s start record: interpreter start jitter alone must not flag it (a CI
    run once took 0.13 s), while a second more than the floor still does."""
    tiny = Reference(302.0, 153.0, "calibrated:x", start_steps=10, start_untimed_steps=0, start_pre_step_s=0.1)
    floor = 0.1 * (1 + checks.PRE_STEP_SLACK) + checks.PRE_STEP_FLOOR_S
    assert checks.untimed_limit(0.1, 302.0) == pytest.approx(floor)
    assert checks.timeline_reasons([_run(300.0, observed_ms=300.0, warmup=0, first_step_s=0.13)], tiny) == ([], [])
    _, suspicious = checks.timeline_reasons([_run(300.0, observed_ms=300.0, warmup=0, first_step_s=floor + 1.0)],
                                            tiny)
    assert suspicious and "untimed work before training" in suspicious[0]
    # where 5% of t_i is more than the floor, the floor changes nothing
    assert checks.untimed_limit(5.0, 20_000.0) == pytest.approx(5.0 * 1.25 + 1.0)
    assert checks.untimed_limit(5.0, 100_000.0) == pytest.approx(5.0 * 1.25 + 5.0)


def test_runs_without_a_timeline_or_references_without_clock_figures_are_not_judged_by_it() -> None:
    bare = Execution(outcome=RunOutcome(exit_code=0, wall_s=25.0, log_path=Path("l"), timed_out=False),
                     metrics=Metrics(val_loss=3.6, train_time_ms=1.0, step=1, steps=1), verdict=Verdict("passed"))
    assert checks.timeline_reasons([bare], REF) == ([], [])
    manifest = Reference(20_000.0, 12_000.0, "manifest")
    assert checks.timeline_reasons([_run(10_000.0, warmup=50, first_step_s=100.0)], manifest) == ([], [])
