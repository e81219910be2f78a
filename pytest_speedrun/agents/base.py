"""The agent interface: a context in, a solution script out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..tasks import Task


@dataclass(frozen=True)
class AgentContext:
    """What an agent may see. The workspace holds the start script (and hints.md when hints are given);
    the target record is never placed in it."""

    task: Task
    workspace: Path
    script_path: Path
    hints: str | None
    hint_levels: tuple[int, ...]
    seed: int
    artifacts_dir: Path
    timeout_s: float

    @property
    def start_script(self) -> str:
        return self.script_path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Solution:
    script: str
    transcript: str | None = None
    usage: dict = field(default_factory=dict)


@runtime_checkable
class Agent(Protocol):
    name: str

    def solve(self, ctx: AgentContext) -> Solution: ...
