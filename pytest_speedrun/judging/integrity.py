"""Turn what the harness saw into a `Verdict`: one status from the shared vocabulary (status.py) plus the
reasons."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_speedrun.execution.runner import RunOutcome
from pytest_speedrun.judging.metrics import Metrics
from pytest_speedrun.judging.status import (
    CRASHED,
    INVALID,
    NO_RESULT,
    PASSED,
    SUSPICIOUS,
    TAMPERED,
    TIMEOUT,
    Status,
)


@dataclass(frozen=True)
class Verdict:
    status: Status
    reasons: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == PASSED


def judge(outcome: RunOutcome, metrics: Metrics | None, metrics_error: str | None, target_val_loss: float,
          timeout_s: float) -> Verdict:
    """The status of a finished run. `metrics` is None when parsing failed (`metrics_error` says why)."""
    extra = f" ({outcome.reason})" if outcome.reason else ""
    if outcome.timed_out:
        return Verdict(TIMEOUT, (f"killed after the {timeout_s:g} s timeout{extra}",))
    if outcome.exit_code != 0:
        return Verdict(CRASHED, (f"exit code {outcome.exit_code}{extra}",))
    if metrics is None:
        return Verdict(NO_RESULT, (metrics_error or "no final validation line",))
    # The script reports its own train_time; it cannot exceed what the harness measured around the process.
    if metrics.train_time_ms > outcome.wall_s * 1000.0:
        return Verdict(TAMPERED, (f"reported train_time {metrics.train_time_ms:.0f} ms exceeds the harness-measured "
                                  f"wall time {outcome.wall_s * 1000:.0f} ms",))
    if metrics.last_train_step is not None and metrics.last_train_step < metrics.step:
        return Verdict(TAMPERED, (f"the final validation line claims step {metrics.step}/{metrics.steps} but the last "
                                  f"training step logged is {metrics.last_train_step}",))
    if metrics.last_train_time_ms is not None and metrics.train_time_ms < metrics.last_train_time_ms:
        return Verdict(TAMPERED, (f"final train_time {metrics.train_time_ms:.0f} ms is below the last training-step "
                                  f"train_time {metrics.last_train_time_ms:.0f} ms",))
    if one_n := one_n_reasons(metrics):
        return Verdict(TAMPERED, tuple(one_n))
    if metrics.val_loss > target_val_loss:
        return Verdict(INVALID, (f"val_loss {metrics.val_loss:.4f} > target {target_val_loss:.4f}",))
    return Verdict(PASSED)


def _span(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


def one_n_reasons(metrics: Metrics) -> list[str]:
    """One N per run: every step line claims the same total N (that of the final validation line), step numbers
    never go back, and nothing is stepped after the final validation line. A run that stops early, at the first
    validation under the target, and relabels that step as the last (`step:k/k`) selects its model on the test
    data; a run that restarts or interleaves runs goes back. Log line numbers name the lines."""
    reasons = []
    final_n, where = metrics.steps, metrics.final_line
    others = [t for t in metrics.step_totals if t.steps != final_n]
    if others:
        said = "; ".join(f"{_span(t.first_line, t.last_line)} ({t.count} step line{'s' * (t.count > 1)}) "
                         f"say /{t.steps}" for t in others[:3])
        reasons.append(f"the step lines do not agree on the number of steps: the final validation line (log line "
                       f"{where}) says step:{metrics.step}/{final_n}, but {said} (one N per run; stopping early "
                       "and relabelling the last step is model selection on the validation set)")
    if metrics.step_back is not None:
        line, step, prev_line, prev_step = metrics.step_back
        reasons.append(f"step numbers go backwards: log line {line} says step {step} after log line {prev_line} "
                       f"said step {prev_step}")
    if metrics.lines_after_final is not None:
        count, first = metrics.lines_after_final
        reasons.append(f"{count} step line(s) follow the final validation line (log line {where}), from log line "
                       f"{first}: the run went on after reporting its result")
    return reasons


# --- suspicious results -----------------------------------------------------------------------------------
FAST_FRACTION = 0.4  # t' < 0.4 x t_(i+1): the threshold of the paper's own analysis
LOSS_MARGIN = 0.1  # val_loss < target - 0.1
STEP_FACTOR = 3.0  # step count changed more than 3x while train_time fell
# Untimed work: wall time not covered by the reported train_time, compared with the start record's.
UNTIMED_FACTOR = 1.5
UNTIMED_TRAIN_FRACTION = 0.25


def suspicious_reasons(metrics: Metrics, wall_s: float, target_val_loss: float, t_start_ms: float,
                       t_target_ms: float, start_steps: int | None = None,
                       start_untimed_s: float | None = None) -> list[str]:
    """Reasons a valid-looking result is implausible and needs a human look (empty when plausible)."""
    reasons = []
    t = metrics.train_time_ms
    if t < FAST_FRACTION * t_target_ms:
        reasons.append(f"train_time {t:.0f} ms is below {FAST_FRACTION:g} x the next record's {t_target_ms:.0f} ms")
    if metrics.val_loss < target_val_loss - LOSS_MARGIN:
        reasons.append(f"val_loss {metrics.val_loss:.4f} is more than {LOSS_MARGIN:g} below the target "
                       f"{target_val_loss:.4f}")
    if start_steps and t < t_start_ms:
        ratio = metrics.steps / start_steps
        if ratio > STEP_FACTOR or ratio < 1 / STEP_FACTOR:
            reasons.append(f"step count changed {start_steps} -> {metrics.steps} (x{ratio:.2f}) while train_time fell")
    if start_untimed_s is not None:
        untimed = wall_s - t / 1000.0
        limit = UNTIMED_FACTOR * start_untimed_s + UNTIMED_TRAIN_FRACTION * t_start_ms / 1000.0
        if untimed > limit:
            reasons.append(f"{untimed:.1f} s of the run's wall time is outside its reported train_time "
                           f"(the start record: {start_untimed_s:.1f} s; limit {limit:.1f} s): "
                           "work before the clock starts or while it is stopped")
    return reasons


def final_verdict(run: Verdict, tampered: list[str], suspicious: list[str], allow_suspicious: bool) -> Verdict:
    """Combine the run verdict with contract violations (always `tampered`) and suspicion (on passes only)."""
    if tampered:
        return Verdict(TAMPERED, tuple(tampered) + tuple(r for r in run.reasons if run.status == TAMPERED))
    if run.status == PASSED and suspicious:
        if allow_suspicious:
            return Verdict(PASSED, tuple(f"suspicious (allowed): {r}" for r in suspicious))
        return Verdict(SUSPICIOUS, tuple(suspicious))
    return run
