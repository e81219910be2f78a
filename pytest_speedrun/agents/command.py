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

When the harness holds the item's lease for the agent (`ctx.resources`), the program gets its variables
(CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS, the data contract) and is pinned to its cores, so training it starts
itself stays on the item's devices. Subclasses (the coding-agent presets, coding.py) build the command, extra
variables and a stdin file per item through `invocation(ctx)`.

With `--speedrun-sandbox`, the program runs in the session's sandbox (`ctx.sandbox`): with bwrap it sees the
system, the Python environment and the directory pytest started in read-only, its workspace read-write, the
paths named on its command line and the install of the program it starts read-only (`visible_paths`), and
none of the answer holders (answers.py); other home directories and work trees are empty. It gets the
network only when it needs one: an agent that calls an API says so with `needs_network` (the coding-agent
presets do), and `--speedrun-agent-network` grants it to any `command:` agent.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pytest_speedrun.agents.base import AgentContext, Solution
from pytest_speedrun.errors import AgentError, UsageError
from pytest_speedrun.execution.answers import task_answer_holders
from pytest_speedrun.execution.runner import kill_run
from pytest_speedrun.tasks.hints import regime_label


@dataclass(frozen=True)
class Invocation:
    """What runs for one item: the shell command, variables added to its environment, and a file for its stdin
    (None: /dev/null)."""

    command: str
    env: dict[str, str] = field(default_factory=dict)
    stdin: Path | None = None


def _pin(cores: tuple[int, ...]) -> Callable[[], None] | None:
    """Pin the program (and so everything it starts) to the lease's cores, between fork and exec."""
    if not cores or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, cores)


class CommandAgent:
    needs_network = False  # True for an agent that must reach an API; the sandbox then keeps the host network

    def __init__(self, command: str, *, needs_network: bool | None = None, writable: Iterable[Path] = ()) -> None:
        """`writable`: paths outside the workspace the program must write (its own state, e.g. a config
        directory), read-write in the sandbox."""
        if not command.strip():
            raise UsageError("--speedrun-agent=command: needs a shell command after the colon, e.g. command:./my-agent")
        self.command = command
        self.name = f"command:{command}"
        if needs_network is not None:
            self.needs_network = needs_network
        self.writable = tuple(Path(p).expanduser() for p in writable)

    def sandbox_prefix(self, ctx: AgentContext) -> list[str]:
        """The session's sandbox around the program: the task's answer holders masked as well as the session's,
        and the network only if the agent needs it or the session allows it."""
        masked = task_answer_holders(ctx.task)
        return ctx.sandbox.prefix(ctx.workspace, read_only=ctx.sandbox.outside_masks(self.visible_paths(ctx), masked),
                                  masked=masked, writable=self.writable,
                                  network=self.needs_network or ctx.sandbox.agent_network)

    def visible_paths(self, ctx: AgentContext) -> tuple[Path, ...]:
        """What the program needs outside the workspace, read-only in the sandbox: every existing absolute path
        named on its command line (an agent script, its config), and the install of the program the command
        starts when it comes from PATH (the bin directory's prefix, e.g. ~/.local or an nvm node, and the
        folder its link resolves to). An answer holder named there, or a file inside one, stays hidden
        (sandbox_prefix drops them)."""
        try:
            words = shlex.split(self.invocation(ctx).command)
        except ValueError:  # unbalanced quotes: the shell will say so when it runs
            return ()
        paths = [Path(w).expanduser() for w in words if w.startswith(("/", "~"))]
        exe = shutil.which(words[0]) if words else None
        if exe is not None:
            found = Path(exe)
            paths += [found.parent.parent if found.parent.name == "bin" else found.parent, found.resolve().parent]
        return tuple(p for p in paths if p.exists())

    def invocation(self, ctx: AgentContext) -> Invocation:
        """The command for this item (the coding-agent presets add their flags, variables and prompt here)."""
        return Invocation(self.command)

    def solve(self, ctx: AgentContext) -> Solution:
        hints_file = ctx.workspace / "hints.md"
        run = self.invocation(ctx)
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
        if ctx.resources is not None:
            env.update(ctx.resources.env)
        env.update(run.env)
        log_path = ctx.artifacts_dir / "agent.log"
        with open(log_path, "wb") as log, open(run.stdin or os.devnull, "rb") as stdin:
            proc = subprocess.Popen([*self.sandbox_prefix(ctx), "/bin/sh", "-c", run.command], cwd=ctx.workspace,
                                    env=env, stdin=stdin, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True,
                                    preexec_fn=_pin(ctx.resources.cores) if ctx.resources is not None else None)
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
