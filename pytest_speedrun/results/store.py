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

from pytest_speedrun.errors import SpeedrunError
from pytest_speedrun.files import write_atomic
from pytest_speedrun.judging.status import RETRYABLE

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=-]+")


def new_session_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def item_dir(root: Path, session_id: str, item_name: str) -> Path:
    """A fresh directory for one item: the name made filesystem-safe, unique within the session."""
    path = root / session_id / _UNSAFE.sub("_", item_name).strip("_")
    path.mkdir(parents=True, exist_ok=False)
    return path


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


RESULTS_FILE = "results.jsonl"
REQUIRED_KEYS = ("task", "agent", "hints", "seed", "status")


class ResultsFormatError(SpeedrunError, ValueError):
    """A results store is missing or holds a line that is not a result record."""


def results_file(path: Path) -> Path:
    """The results.jsonl of a store directory, or `path` itself when it is the file."""
    return path / RESULTS_FILE if path.is_dir() or not path.suffix else path


def read_records(path: Path, *, missing_ok: bool = False) -> list[dict]:
    """Every record of a store (a store directory or its results.jsonl), in order: the one reader.

    A last line without its newline that does not parse is a write cut short by a crash: skipped, since every
    record before it is whole. Any other line that is not a record raises ResultsFormatError naming the file
    and line, so that a damaged store is never silently read as a smaller one. A missing store is an error,
    or no records with `missing_ok` (a session before its first result)."""
    file = results_file(path)
    if not file.is_file():
        if missing_ok:
            return []
        raise ResultsFormatError(f"{path} holds no {RESULTS_FILE}" if path.is_dir()
                                 else f"{path}: no such results file or store")
    text = file.read_text(encoding="utf-8")
    lines = text.split("\n")
    torn = len(lines) - 1 if lines[-1] else None  # the last line lacks its newline: maybe cut short
    records = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if lineno - 1 == torn:
                continue
            raise ResultsFormatError(f"{file}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno}); remove or "
                                     "repair that line") from None
        if not isinstance(rec, dict):
            raise ResultsFormatError(f"{file}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in rec]
        if missing:
            raise ResultsFormatError(f"{file}:{lineno}: result record lacks {', '.join(missing)}")
        records.append(rec)
    return records


def find_completed(root: Path, config_key: str) -> dict | None:
    """The latest completed record with this config key, for --speedrun-resume (None if there is none)."""
    found = None
    for record in read_records(root, missing_ok=True):
        if record.get("config_key") == config_key and record.get("status") not in RETRYABLE \
                and not record.get("resumed"):
            found = record
    return found
