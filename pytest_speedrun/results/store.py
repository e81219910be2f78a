"""The results store: one directory per item per session, plus an append-only `results.jsonl`.

Layout under the results root (default `.speedrun/` in the rootdir):

    results.jsonl                          one JSON record per finished item, appended atomically
    <session>/<item>/workspace/            where the agent worked and the solution ran
    <session>/<item>/start.py              the start script as given
    <session>/<item>/solution.py           the script that was run
    <session>/<item>/solution.diff         solution vs start (unified diff)
    <session>/<item>/run.log               stdout+stderr of the run
    <session>/<item>/agent.log             the agent's transcript, if any
    <session>/<item>/result.json           the same record as the results.jsonl line
"""

from __future__ import annotations

import difflib
import json
import os
import re
import secrets
import time
from pathlib import Path

from pytest_speedrun.judging.status import RETRYABLE

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=-]+")


def new_session_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def item_dir(root: Path, session_id: str, item_name: str) -> Path:
    """A fresh directory for one item: the name made filesystem-safe, unique within the session."""
    path = root / session_id / _UNSAFE.sub("_", item_name).strip("_")
    path.mkdir(parents=True, exist_ok=False)
    return path


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_diff(path: Path, before: str, after: str) -> None:
    diff = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                fromfile="start.py", tofile="solution.py")
    write_atomic(path, "".join(diff))


def append_record(root: Path, record: dict) -> None:
    """Append one line to results.jsonl with a single O_APPEND write, so concurrent workers never interleave."""
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / "results.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_records(root: Path) -> list[dict]:
    """Every record of a store; a line cut short by a crash mid-write is skipped, never fatal."""
    path = root / "results.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records




def find_completed(root: Path, config_key: str) -> dict | None:
    """The latest completed record with this config key, for --speedrun-resume (None if there is none)."""
    found = None
    for record in read_records(root):
        if record.get("config_key") == config_key and record.get("status") not in RETRYABLE \
                and not record.get("resumed"):
            found = record
    return found
