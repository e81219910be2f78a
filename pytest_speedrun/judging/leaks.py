"""Nothing in the workspace may point at the answer: the target record's script, the suite's record and hint
files (beyond the hints given), or a copy of the target script. Checked after the agent ran, for agents that
are not trusted harness components (`oracle` necessarily returns the target script)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pytest_speedrun.tasks.manifest import Task

_MAX_SCAN_BYTES = 8 * 1024 * 1024


def forbidden_paths(task: Task, given_levels: tuple[int, ...]) -> list[Path]:
    """Paths an agent must not reference: the target script, the suite directory (records, manifests and hints),
    and any hint file of a level not given."""
    paths = [task.manifest.parent]
    if task.target.script.path is not None:
        paths += [task.target.script.path, task.target.script.path.parent]
    paths += [sub.path for _, sub in task.target.script.files if sub.path is not None]  # its companions
    paths += [p for lv, p in task.hints.items() if lv not in given_levels]
    return sorted(set(paths), key=str)


def leak_reasons(workspace: Path, task: Task, given_levels: tuple[int, ...]) -> list[str]:
    forbidden = forbidden_paths(task, given_levels)
    needles = [str(p).encode() for p in forbidden]
    target = task.target.script.path
    target_text = target.read_bytes() if target is not None and target.exists() else None
    target_digest = hashlib.sha256(target_text).hexdigest() if target_text else None
    reasons: list[str] = []
    for path in sorted(workspace.rglob("*")):
        rel = path.relative_to(workspace)
        if path.is_symlink():
            dest = path.resolve()
            if any(dest == f or f in dest.parents for f in forbidden):
                reasons.append(f"workspace file {rel} is a link to {dest}, which agents may not read")
            continue
        if not path.is_file() or path.stat().st_size > _MAX_SCAN_BYTES:
            continue
        data = path.read_bytes()
        hit = next((n.decode() for n in needles if n in data), None)
        if hit:
            reasons.append(f"workspace file {rel} refers to {hit}, which agents may not read")
        elif target_digest and hashlib.sha256(data).hexdigest() == target_digest:
            reasons.append(f"workspace file {rel} is a copy of the target record's script")
    return reasons
