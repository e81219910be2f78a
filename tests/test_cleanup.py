"""No process of a training run outlives pytest: not after Ctrl-C, SIGTERM, or a crashed xdist worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes import manifest

HANGING = '''\
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with open(os.environ["RECORD_FILE"], "a") as f:
    f.write(f"{os.getpid()} {child.pid}\\n")
time.sleep(120)
'''


def _suite(root: Path, record: Path) -> Path:
    suite = root / "hang"
    (suite / "records").mkdir(parents=True)
    (suite / "records" / "record_1.py").write_text(HANGING)
    (suite / "records" / "record_2.py").write_text(HANGING)
    for i in (1, 2):
        text = manifest(f"hang{i:02d}", "records/record_1.py", "records/record_2.py", reference="manifest",
                        hints=False)
        text = text.replace('env = { NANOGPT_VAL_TOKENS = "4096" }',
                            f'env = {{ NANOGPT_VAL_TOKENS = "4096", RECORD_FILE = "{record}" }}')
        (suite / f"hang{i:02d}.toml").write_text(text)
    return suite


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def _start(tmp_path: Path, cache_dir: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    record = tmp_path / "pids.txt"
    suite = _suite(tmp_path, record)
    cmd = [sys.executable, "-m", "pytest", f"--speedrun-suite={suite}", "--speedrun-agent=baseline",
           f"--speedrun-cache-dir={cache_dir}", f"--rootdir={tmp_path}", "-p", "no:cacheprovider", *extra]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, record


def _wait_for_pids(record: Path, count: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if record.exists():
            pids = [int(p) for p in record.read_text().split()]
            if len(pids) >= 2 * count:
                return pids
        time.sleep(0.1)
    raise AssertionError(f"runs did not start; {record} holds {record.read_text() if record.exists() else None}")


def _assert_all_dead(pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in pids if _alive(p)] == [], "orphan processes survived"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_pytest_leaves_no_orphans(tmp_path: Path, cache_dir: Path, sig: int) -> None:
    proc, record = _start(tmp_path, cache_dir)
    pids = _wait_for_pids(record, 1)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    _assert_all_dead(pids)


@pytest.mark.slow
def test_a_crashed_xdist_worker_leaves_no_orphans(tmp_path: Path, cache_dir: Path) -> None:
    proc, record = _start(tmp_path, cache_dir, "-n", "2", "--speedrun-timeout=8")
    pids = _wait_for_pids(record, 1)
    run_pid = pids[0]
    # The run's python is a child of the worker: kill that worker outright.
    worker = int(Path(f"/proc/{run_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(worker, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert b"crashed" in out or b"worker" in out
    all_pids = [int(p) for p in record.read_text().split()]
    _assert_all_dead(all_pids)
