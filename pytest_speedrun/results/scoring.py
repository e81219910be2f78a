"""Speedup and Fraction of Speedup Recovered (FSR), and simple aggregates.

FSR = (t_i - t') / (t_i - t_{i+1}): 0 means no faster than the start record, 1 means the human record's
speedup was fully recovered, above 1 means faster than the next record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
