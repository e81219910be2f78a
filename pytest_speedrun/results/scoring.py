"""Speedup and Fraction of Speedup Recovered (FSR), and simple aggregates.

FSR = (t_i - t') / (t_i - t_{i+1}): 0 means no faster than the start record, 1 means the human record's
speedup was fully recovered, above 1 means faster than the next record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pytest_speedrun.judging.status import STEPS, TIME, Metric
from pytest_speedrun.results.noise import ASSUMED_CV, Spread


@dataclass(frozen=True)
class Reference:
    """Reference times of a task: t_i, t_(i+1), where they come from, and what the start record looked like."""

    t_start_ms: float
    t_target_ms: float
    source: str  # "manifest" or "calibrated:<fingerprint id>"
    start_steps: int | None = None
    start_untimed_s: float | None = None  # start record's wall time outside train_time (calibrated only)
    n_start: int = 1  # runs behind t_i and t_(i+1)
    n_target: int = 1
    spread: Spread = field(default_factory=lambda: Spread(ASSUMED_CV, None))  # run-to-run spread of train times
    state: str = "manifest"  # fresh | re-checked | re-measured | cached | manifest (see calibrate.py)
    disturbed: tuple[str, ...] = ()  # calibration runs the machine disturbed even after retries
    start_untimed_steps: int | None = None  # the start record's training steps outside its clock (timeline.py)
    start_pre_step_s: float | None = None  # ... and its time before the first training-step line
    start_pre_step_cpu_s: float | None = None  # ... and the CPU seconds its processes used by then
    start_val_pause_s: float | None = None  # ... and its wall time per validation pause (timeline.val_pause_ms)
    probe_s: float | None = None  # the pump's CPU probe while the references were measured (noise.drift)


@dataclass(frozen=True)
class Score:
    t_start_ms: float
    t_target_ms: float
    train_time_ms: float
    speedup: float
    fsr: float
    metric: Metric = TIME
    s_start: int | None = None  # steps tasks: s_i, s_(i+1) and the solution's steps s'
    s_target: int | None = None
    steps: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


def score(train_time_ms: float, t_start_ms: float, t_target_ms: float) -> Score:
    if t_target_ms >= t_start_ms:
        raise ValueError(f"t_target_ms={t_target_ms} must be less than t_start_ms={t_start_ms}")
    if train_time_ms <= 0:
        raise ValueError(f"train_time_ms={train_time_ms} must be positive")
    return Score(
        t_start_ms=t_start_ms, t_target_ms=t_target_ms, train_time_ms=train_time_ms,
        speedup=t_start_ms / train_time_ms, fsr=(t_start_ms - train_time_ms) / (t_start_ms - t_target_ms),
    )


def steps_score(steps: float, s_start: int, s_target: int, t_start_ms: float = 0.0, t_target_ms: float = 0.0,
                train_time_ms: float = 0.0) -> Score:
    """FSR over step counts; `speedup` is s_i / s'. The times ride along for the record only."""
    if s_target >= s_start:
        raise ValueError(f"s_target={s_target} must be less than s_start={s_start}")
    if steps <= 0:
        raise ValueError(f"steps={steps} must be positive")
    return Score(t_start_ms=t_start_ms, t_target_ms=t_target_ms, train_time_ms=train_time_ms,
                 speedup=s_start / steps, fsr=(s_start - steps) / (s_start - s_target), metric=STEPS,
                 s_start=s_start, s_target=s_target, steps=steps)


def score_task(metric: Metric, ref: Reference, train_time_ms: float, steps: float | None,
               s_start: int | None, s_target: int | None) -> Score:
    """The score by the task's metric: over train times (against the reference times) or over step counts
    (against the manifest's steps of the two records). Raises ValueError when the figures cannot be scored."""
    if metric != STEPS:
        return score(train_time_ms, ref.t_start_ms, ref.t_target_ms)
    if steps is None or s_start is None or s_target is None:
        raise ValueError("a steps task needs the solution's steps and both records' steps")
    return steps_score(steps, s_start, s_target, ref.t_start_ms, ref.t_target_ms, train_time_ms)


def exact_interval(sc: Score) -> tuple[float, float] | None:
    """A steps score's interval: the score itself (a step count has no run-to-run noise); None for time scores,
    whose interval comes from noise.fsr_interval."""
    return (sc.fsr, sc.fsr) if sc.metric == STEPS else None
