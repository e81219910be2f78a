"""What a workspace holds besides its script: a record's companion files, and a search node's copy of them.

A record from 2026 on is several files (`triton_kernels.py`, `dc_triton_kernels.py`: `ScriptRef.files`, cached
beside the script). The agent gets them in its workspace, beside `train_gpt2.py`, as the record expects them;
a search node runs in a folder of its own, so it gets the workspace's other Python files too, as they are when
it runs (what the agent made of them). The rules judge all of them (judging/sources.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pytest_speedrun.errors import SpeedrunError
from pytest_speedrun.judging.sources import folder_files
from pytest_speedrun.tasks.manifest import ScriptRef


def copy_companions(task_id: str, ref: ScriptRef, folder: Path) -> None:
    """Copy the companion files of the record `ref` into `folder`, beside its script."""
    for name, sub in ref.files:
        if sub.path is None or not sub.path.is_file():
            raise SpeedrunError(f"task {task_id}: the start script's companion {name} ({sub.describe()}) is not "
                                "available locally")
        shutil.copyfile(sub.path, folder / name)


def copy_python_files(workspace: Path, folder: Path, script_name: str) -> None:
    """Copy every Python file of `workspace` but its script into `folder` (a search node's run folder), keeping
    their relative paths."""
    for rel in folder_files(workspace, skip=(script_name,)):
        dest = folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(workspace / rel, dest)
