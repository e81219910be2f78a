"""Hint regimes: which hint levels an item gets, and the hint text handed to the agent.

Levels follow the paper: 1 = pseudocode of the change, 2 = a text description, 3 = a mini-paper.
A regime is a combination such as `1+2`; regime `0` means no hints.
"""

from __future__ import annotations

from .errors import UsageError
from .tasks import HINT_LEVELS, Task

LEVEL_NAMES = {1: "pseudocode", 2: "description", 3: "mini-paper"}


def parse_regimes(spec: str) -> list[tuple[int, ...]]:
    """Parse `--speedrun-hints`, e.g. "0,1,1+2" -> [(), (1,), (1, 2)]. Order is kept, duplicates dropped."""
    regimes: list[tuple[int, ...]] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            raise UsageError(f"--speedrun-hints={spec}: empty regime; use e.g. 0,1,2,3,1+2,1+2+3")
        if part == "0":
            regime: tuple[int, ...] = ()
        else:
            try:
                levels = [int(x) for x in part.split("+")]
            except ValueError:
                raise UsageError(f"--speedrun-hints={spec}: {part!r} is not a hint regime; "
                                 "use 0 (none), 1, 2, 3 or combinations like 1+2") from None
            if any(lv not in HINT_LEVELS for lv in levels) or len(set(levels)) != len(levels):
                raise UsageError(f"--speedrun-hints={spec}: {part!r} must combine distinct levels 1, 2, 3")
            regime = tuple(sorted(levels))
        if regime not in regimes:
            regimes.append(regime)
    return regimes


def regime_label(regime: tuple[int, ...]) -> str:
    return "+".join(str(lv) for lv in regime) or "0"


def hint_text(task: Task, regime: tuple[int, ...]) -> str | None:
    """The hint document for `regime`, or None for no hints. Raises UsageError if the task lacks a level."""
    if not regime:
        return None
    missing = [lv for lv in regime if lv not in task.hints]
    if missing:
        raise UsageError(f"{task.manifest}: task {task.id} has no hint level {missing[0]} "
                         f"(key 'hints.{missing[0]}'); choose another --speedrun-hints regime")
    parts = [f"## Hint level {lv}: {LEVEL_NAMES[lv]}\n\n{task.hints[lv].read_text(encoding='utf-8').strip()}\n"
             for lv in regime]
    return "\n".join(parts)
