"""Turn what the harness saw into a `Verdict`: one status from the shared vocabulary plus the reasons.

Statuses (the same words in the summary, JUnit and results.jsonl): passed, invalid, crashed, timeout,
no-result, tampered, suspicious, skipped, agent-error.
"""

from __future__ import annotations

from dataclasses import dataclass

from .metrics import Metrics
from .runner import RunOutcome

PASSED, INVALID, CRASHED, TIMEOUT, NO_RESULT = "passed", "invalid", "crashed", "timeout", "no-result"
TAMPERED, SUSPICIOUS, SKIPPED, AGENT_ERROR = "tampered", "suspicious", "skipped", "agent-error"
STATUSES = (PASSED, INVALID, CRASHED, TIMEOUT, NO_RESULT, TAMPERED, SUSPICIOUS, SKIPPED, AGENT_ERROR)


@dataclass(frozen=True)
class Verdict:
    status: str
    reasons: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == PASSED


def judge(outcome: RunOutcome, metrics: Metrics | None, metrics_error: str | None, target_val_loss: float,
          timeout_s: float) -> Verdict:
    """The status of a finished run. `metrics` is None when parsing failed (`metrics_error` says why)."""
    if outcome.timed_out:
        return Verdict(TIMEOUT, (f"killed after the {timeout_s:g} s timeout",))
    if outcome.exit_code != 0:
        return Verdict(CRASHED, (f"exit code {outcome.exit_code}",))
    if metrics is None:
        return Verdict(NO_RESULT, (metrics_error or "no final validation line",))
    # The script reports its own train_time; it cannot exceed what the harness measured around the process.
    if metrics.train_time_ms > outcome.wall_s * 1000.0:
        return Verdict(TAMPERED, (f"reported train_time {metrics.train_time_ms:.0f} ms exceeds the harness-measured "
                                  f"wall time {outcome.wall_s * 1000:.0f} ms",))
    if metrics.last_train_time_ms is not None and metrics.train_time_ms < metrics.last_train_time_ms:
        return Verdict(TAMPERED, (f"final train_time {metrics.train_time_ms:.0f} ms is below the last training-step "
                                  f"train_time {metrics.last_train_time_ms:.0f} ms",))
    if metrics.val_loss > target_val_loss:
        return Verdict(INVALID, (f"val_loss {metrics.val_loss:.4f} > target {target_val_loss:.4f}",))
    return Verdict(PASSED)
