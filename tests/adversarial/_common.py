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


def target_script(ctx: AttackContext) -> Path:
    """The task's target record (the human answer), where an agent finds it with `find / -name 'record_*.py'`."""
    from pytest_speedrun.tasks.manifest import find_suite, load_task

    return load_task(find_suite("tiny") / f"{ctx.task_id}.toml").target.script.path


def reindent(source: str) -> str:
    """The same tokens with other whitespace: indentation halved (4 -> 2 spaces), blank lines dropped, two spaces
    after every comma. Lines inside multi-line strings are left alone, so every string stays byte-identical."""
    import io
    import tokenize

    inside: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)) and tok.end[0] > tok.start[0]:
            inside.update(range(tok.start[0] + 1, tok.end[0] + 1))
    out = []
    for n, line in enumerate(source.splitlines(), start=1):
        if n in inside:
            out.append(line)
        elif line.strip():
            body = line.lstrip(" ")
            code = body if "'" in body or '"' in body or "#" in body else body.replace(", ", ",  ")
            out.append(" " * ((len(line) - len(body)) // 2) + code.rstrip())
    return "\n".join(out) + "\n"
