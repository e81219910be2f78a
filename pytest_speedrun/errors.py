"""One small exception hierarchy; the plugin turns these into one-line messages and statuses."""

from __future__ import annotations


class SpeedrunError(Exception):
    """Base class of every error pytest-speedrun raises on purpose."""


class TaskError(SpeedrunError):
    """A task manifest (or a file it names) is malformed."""


class CompatError(TaskError):
    """A compat fix found the construct it repairs in a script but cannot repair it there (tasks/compat.py)."""


class DataError(SpeedrunError):
    """A data shard is missing, truncated or not in the FineWeb `.bin` format."""


class AgentError(SpeedrunError):
    """The agent failed to produce a solution script. `usage` is what it spent before failing (LLM calls,
    tokens, cost), so a failed item's record still counts it."""

    def __init__(self, *args: object, usage: dict | None = None) -> None:
        super().__init__(*args)
        self.usage = dict(usage or {})


class RunError(SpeedrunError):
    """The harness could not start or supervise a training run."""


class MetricsError(SpeedrunError):
    """A log holds no final result."""


class CalibrationError(SpeedrunError):
    """Reference times could not be measured on this machine."""


class UsageError(SpeedrunError):
    """A command-line option or ini value is invalid."""


class MissingInput(SpeedrunError):
    """Something an item needs is not on this machine (data, scripts, GPUs, keys); the message says the fix.

    Items that hit this are skipped, not failed."""


class RuntimeBuildError(SpeedrunError):
    """A runtime could not be built (no base Python, no uv, uv failed, or the build's torch is not the runtime's)."""
