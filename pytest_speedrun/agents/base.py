"""The agent interface: a context in, a solution script out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from pytest_speedrun.execution.sandbox import Sandbox
from pytest_speedrun.judging.status import PASSED
from pytest_speedrun.tasks.manifest import Task


@dataclass(frozen=True)
class NodeResult:
    """The harness's verdict on one candidate script a search scaffold asked it to run (a search node).

    Nodes go through exactly the checks a final solution does (env contract, data guard, log parsing,
    integrity and suspicious rules). `log_excerpt` is deterministic (the last lines of the log), so an
    agent's next prompt can include it without any LLM summarising."""

    index: int
    status: str
    reasons: tuple[str, ...]
    val_loss: float | None
    train_time_ms: float | None
    wall_s: float
    fsr: float | None
    log_excerpt: str
    script_path: str
    parent: int | None = None
    note: str = ""  # what the scaffold did: draft, improve, debug, ...
    kind: str = ""  # buggy | improved | unimproved (as in the paper's node-type breakdown)
    slurm_job_id: str | None = None  # --speedrun-launcher=slurm: the job that ran this node
    reused_from: str | None = None  # --speedrun-resume: the interrupted attempt's node whose run this reuses
    train_time_observed_ms: float | None = None  # the harness's own clock of the training steps (timeline.py)

    @property
    def valid(self) -> bool:
        return self.status == PASSED

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("log_excerpt")
        return data


Executor = Callable[..., NodeResult]  # execute(script_text, parent=None, note="") -> NodeResult


@dataclass(frozen=True)
class AgentResources:
    """The item's lease, for an agent that starts processes (a `command:` agent, a coding-agent preset) and may
    run training itself: its processes get `env` (the lease's CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS and
    compile caches, and the data contract: NANOGPT_TRAIN_FILES, NANOGPT_VAL_FILES, NANOGPT_VAL_TOKENS) and are
    pinned to `cores`, so its trial runs use the item's devices and never a neighbour's."""

    env: Mapping[str, str] = field(default_factory=dict)
    cores: tuple[int, ...] = ()


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
    execute: Executor | None = None  # runs a candidate under the harness; search scaffolds call it per node
    resume_from: Path | None = None  # an interrupted attempt of this item (LLM agents replay its answers)
    sandbox: Sandbox = Sandbox("none", True)  # the session's isolation, for agents that start processes
    resources: AgentResources | None = None  # the item's lease while the agent runs (None: none held for it)

    @property
    def start_script(self) -> str:
        return self.script_path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Solution:
    """An agent's answer. `node`: the index of the search node whose run is this script's score (search
    scaffolds); the harness then reuses that node's run instead of running the script again."""

    script: str
    transcript: str | None = None
    usage: dict = field(default_factory=dict)
    node: int | None = None


@runtime_checkable
class Agent(Protocol):
    name: str

    def solve(self, ctx: AgentContext) -> Solution: ...
