"""`command:<shell command>`: an external program (a CLI coding agent) edits the script in the workspace.

The program runs with the workspace as its working directory, in its own process group, with these
variables set (documented in the README):

    SPEEDRUN_TASK_ID          task id, e.g. tiny02
    SPEEDRUN_SCRIPT           absolute path of the training script to edit in place
    SPEEDRUN_WORKSPACE        the workspace directory
    SPEEDRUN_HINTS_FILE       path of hints.md, or empty when the item has no hints
    SPEEDRUN_HINT_LEVELS      e.g. "1+2", or "0"
    SPEEDRUN_TARGET_VAL_LOSS  the validation loss the script must still reach
    SPEEDRUN_SEED             the item's seed

Its stdout and stderr are saved as the transcript (`agent.log`). A non-zero exit, a timeout or a missing
script afterwards is an AgentError (status `agent-error`).
"""

from __future__ import annotations

import os
import subprocess

from ..errors import AgentError, UsageError
from ..hints import regime_label
from ..runner import kill_run
from .base import AgentContext, Solution


class CommandAgent:
    def __init__(self, command: str) -> None:
        if not command.strip():
            raise UsageError("--speedrun-agent=command: needs a shell command after the colon, e.g. command:./my-agent")
        self.command = command
        self.name = f"command:{command}"

    def solve(self, ctx: AgentContext) -> Solution:
        hints_file = ctx.workspace / "hints.md"
        env = dict(os.environ)
        env.update({
            "SPEEDRUN_TASK_ID": ctx.task.id,
            "SPEEDRUN_SCRIPT": str(ctx.script_path),
            "SPEEDRUN_WORKSPACE": str(ctx.workspace),
            "SPEEDRUN_HINTS_FILE": str(hints_file) if ctx.hints is not None else "",
            "SPEEDRUN_HINT_LEVELS": regime_label(ctx.hint_levels),
            "SPEEDRUN_TARGET_VAL_LOSS": f"{ctx.task.target_val_loss:g}",
            "SPEEDRUN_SEED": str(ctx.seed),
        })
        log_path = ctx.artifacts_dir / "agent.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(["/bin/sh", "-c", self.command], cwd=ctx.workspace, env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                code = proc.wait(timeout=ctx.timeout_s)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                kill_run(proc.pid, proc=proc)
                proc.wait()
        transcript = log_path.read_text(encoding="utf-8", errors="replace")
        last = transcript.strip().splitlines()[-1:] or ["(no output)"]
        if code is None:
            raise AgentError(f"agent command timed out after {ctx.timeout_s:g} s (see {log_path})")
        if code != 0:
            raise AgentError(f"agent command exited with code {code}: {last[0][:200]} (see {log_path})")
        if not ctx.script_path.is_file():
            raise AgentError(f"agent command removed {ctx.script_path.name}; it must edit the script in place")
        return Solution(script=ctx.script_path.read_text(encoding="utf-8"), transcript=transcript)
