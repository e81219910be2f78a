"""Hint regimes: which hint levels an item gets, and the hint text handed to the agent.

Levels follow the paper: 1 = pseudocode of the change, 2 = a text description, 3 = a mini-paper.
A regime is a combination such as `1+2`; regime `0` means no hints.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pytest_speedrun.errors import UsageError
from pytest_speedrun.tasks.manifest import HINT_LEVELS, Task

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


def external_hints(hints_dir: Path, task: Task) -> dict[int, Path]:
    """Hint files laid out as in the paper's public release: `record_N/level_{1,2,3}_*.txt`, where record_N
    describes the change N -> N+1 (task `taskNN` starts at record NN). Levels without a file are left out."""
    folder = hints_dir / f"record_{task.start.record}"
    found: dict[int, Path] = {}
    for level in HINT_LEVELS:
        matches = sorted(folder.glob(f"level_{level}_*.txt")) + sorted(folder.glob(f"level_{level}.txt"))
        if matches:
            found[level] = matches[0]
    return found


def with_external_hints(task: Task, hints_dir: Path | None) -> Task:
    """`task` with its hints replaced by those of `--speedrun-hints-dir` (UsageError if the dir lacks the task)."""
    if hints_dir is None:
        return task
    found = external_hints(hints_dir, task)
    if not found:
        raise UsageError(f"--speedrun-hints-dir={hints_dir}: no record_{task.start.record}/level_*_*.txt for "
                         f"task {task.id}; expected the paper's layout record_N/level_{{1,2,3}}_<name>.txt")
    return replace(task, hints=found)
