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


def _start(spawn, tmp_path: Path, cache_dir: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    record = tmp_path / "pids.txt"
    suite = _suite(tmp_path, record)
    cmd = [sys.executable, "-m", "pytest", f"--speedrun-suite={suite}", "--speedrun-agent=baseline",
           f"--speedrun-cache-dir={cache_dir}", f"--rootdir={tmp_path}", "-p", "no:cacheprovider", *extra]
    return spawn(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT), record


def _wait_for_pids(record: Path, count: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if record.exists():
            pids = [int(p) for p in record.read_text().split()]
            if len(pids) >= 2 * count:
                return pids
        time.sleep(0.1)
    raise AssertionError(f"runs did not start; {record} holds {record.read_text() if record.exists() else None}")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _assert_all_dead(pids: list[int], within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in pids if _alive(p)] == [], "orphan processes survived"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_pytest_leaves_no_orphans(spawn, tmp_path: Path, cache_dir: Path, sig: int) -> None:
    proc, record = _start(spawn, tmp_path, cache_dir)
    pids = _wait_for_pids(record, 1)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    _assert_all_dead(pids)


@pytest.mark.slow
def test_a_crashed_xdist_worker_leaves_no_orphans(spawn, tmp_path: Path, cache_dir: Path) -> None:
    proc, record = _start(spawn, tmp_path, cache_dir, "-n", "2", "--speedrun-timeout=8")
    pids = _wait_for_pids(record, 1)
    # The run's python is a child of the pump, a child of the worker: kill that worker outright.
    pump = _parent(pids[0])
    worker = _parent(pump)
    os.kill(worker, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert b"crashed while running" in out, out.decode(errors="replace")[-2000:]
    all_pids = [int(p) for p in record.read_text().split()]
    _assert_all_dead(all_pids)


@pytest.mark.parametrize("nproc", [1, 2], ids=["python", "torchrun"])
def test_a_run_dies_with_a_sigkilled_pytest(spawn, tmp_path: Path, cache_dir: Path, nproc: int) -> None:
    """SIGKILL gives pytest no chance to clean up: the pump between pytest and the run sees its parent die and
    ends the run (torchrun, its ranks and their children included)."""
    proc, record = _start(spawn, tmp_path, cache_dir, f"--speedrun-nproc={nproc}")
    pids = _wait_for_pids(record, nproc)
    pump = pids[0]
    while _parent(pump) != proc.pid:  # the run's ancestor right below pytest
        pump = _parent(pump)
    proc.kill()
    proc.communicate(timeout=60)
    _assert_all_dead([*pids, pump], within_s=30)


def test_a_new_session_ends_runs_of_a_dead_session_of_its_store_and_spares_live_ones(
        spawn, tmp_path: Path, cache_dir: Path) -> None:
    from pytest_speedrun.execution import runner

    store = runner.store_id(tmp_path / ".speedrun")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_owner = runner.process_token(gone.pid)
    gone.wait()
    sleep = [sys.executable, "-c", "import time; time.sleep(120)"]

    def left_running(owner: str, session: str, **extra: str) -> subprocess.Popen:
        env = {**os.environ, runner.STORE_MARKER: store, runner.OWNER_MARKER: owner, runner.SESSION_MARKER: session,
               **extra}
        return subprocess.Popen(sleep, env=env, start_new_session=True)
    orphan = left_running(dead_owner, "deadsession")
    live = left_running(runner.process_token(), "livesession")  # this test process plays the live session
    job = left_running(dead_owner, "deadsession", SLURM_JOB_ID="42")  # a Slurm job: resume re-attaches to it
    try:
        time.sleep(0.5)
        proc, _ = _start(spawn, tmp_path, cache_dir, "--speedrun-timeout=1", "-k", "hang01")
        out, _ = proc.communicate(timeout=120)
        assert orphan.wait(timeout=30) == -signal.SIGKILL
        assert live.poll() is None and job.poll() is None
        assert b"ended 1 process(es) of runs left running by dead session(s) deadsession" in out, out[-2000:]
    finally:
        for proc_ in (live, orphan, job):
            proc_.kill()
