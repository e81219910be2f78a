"""Offline reference agents: `baseline` (no change) and `oracle` (the human answer)."""

from __future__ import annotations

import shutil

from pytest_speedrun.agents.base import AgentContext, Solution
from pytest_speedrun.errors import AgentError


class BaselineAgent:
    """Returns the start script unchanged: a valid run with FSR ≈ 0, the floor of the scale."""

    name = "baseline"
    trusted = True  # a harness component: exempt from the workspace leak scan

    def solve(self, ctx: AgentContext) -> Solution:
        return Solution(script=ctx.start_script)


class OracleAgent:
    """Returns the target record's script: FSR ≈ 1, the ceiling of the scale and a harness self-check. A target
    of several files also writes its companions into the workspace (over the start's), where its script runs."""

    name = "oracle"
    trusted = True  # it must read the target script; that is its purpose

    def solve(self, ctx: AgentContext) -> Solution:
        ref = ctx.task.target.script
        if ref.path is None:
            raise AgentError(f"task {ctx.task.id}: the target script {ref.describe()} is not available locally")
        for name, sub in ref.files:  # a several-file record: its other files go beside the script, as it expects
            if sub.path is None or not sub.path.is_file():
                raise AgentError(f"task {ctx.task.id}: the target's companion {name} ({sub.describe()}) is not "
                                 "available locally")
            shutil.copyfile(sub.path, ctx.workspace / name)
        return Solution(script=ref.path.read_text(encoding="utf-8"))
