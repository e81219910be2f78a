"""Shared helpers for the attacks (not an attack itself)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AttackContext:
    workspace: Path
    task_id: str
    target_val_loss: float


def context() -> AttackContext:
    return AttackContext(workspace=Path(os.environ["SPEEDRUN_WORKSPACE"]), task_id=os.environ["SPEEDRUN_TASK_ID"],
                         target_val_loss=float(os.environ["SPEEDRUN_TARGET_VAL_LOSS"]))


def edit(script: str, old: str, new: str, count: int = 1) -> str:
    """Replace `old` by `new`; fail loudly if `old` is missing, so an attack never silently does nothing."""
    if script.count(old) < count:
        raise SystemExit(f"attack target not found in the script: {old!r}")
    return script.replace(old, new)


AFTER_ARGS = "args = Hyperparameters()\n"
