"""The ledger of Slurm jobs in flight: which runs are the same work, and which jobs are orphans to re-attach."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from pytest_speedrun.execution.runner import RUN_MARKER, SESSION_MARKER, RunSpec
from pytest_speedrun.execution.slurm_ledger import JobLedger, run_key


def _spec(tmp_path: Path, text: str = "print('train')\n", **env: str) -> RunSpec:
    script = tmp_path / "train_gpt.py"
    script.write_text(text)
    base = {"NANOGPT_TRAIN_FILES": "/data/train_*.bin", "SPEEDRUN_SEED": "0", "OMP_NUM_THREADS": "2"}
    return RunSpec(script=script, workdir=tmp_path, log_path=tmp_path / "run.log", env=base | env, timeout_s=60)


def test_the_same_work_in_another_session_has_the_same_key(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = _spec(tmp_path / "a", **{SESSION_MARKER: "s1", RUN_MARKER: "r1", "CUDA_VISIBLE_DEVICES": "0,1"})
    two = _spec(tmp_path / "b", **{SESSION_MARKER: "s2", RUN_MARKER: "r2", "CUDA_VISIBLE_DEVICES": "4,5"})
    assert run_key(one) == run_key(two)


def test_other_script_bytes_seed_or_launch_is_other_work(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    key = run_key(spec)
    assert run_key(replace(spec, env=spec.env | {"SPEEDRUN_SEED": "1"})) != key
    assert run_key(replace(spec, nproc=8)) != key
    assert run_key(replace(spec, timeout_s=61)) != key
    spec.script.write_text("print('train faster')\n")
    assert run_key(spec) != key


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _entry(ledger: JobLedger, job_id: str, session: str, tmp_path: Path, **owner: object):
    entry = ledger.add("k", job_id, tmp_path / "slurm", tmp_path / "run.log", session, time.time())
    if owner:
        data = json.loads(Path(entry.path).read_text()) | owner
        Path(entry.path).write_text(json.dumps(data))
    return entry


def test_a_job_whose_owner_died_here_is_claimed_once(tmp_path: Path) -> None:
    ledger = JobLedger(tmp_path / "ledger")
    _entry(ledger, "17", "old", tmp_path, pid=_dead_pid())
    claimed = ledger.claim("k", "new")
    assert claimed is not None
    entry, previous = claimed
    assert (entry.job_id, previous, entry.session_id, entry.pid) == ("17", "old", "new", os.getpid())
    assert ledger.claim("k", "third") is None  # now owned by a live process with a fresh heartbeat


def test_jobs_of_live_owners_and_of_the_same_session_are_left_alone(tmp_path: Path) -> None:
    ledger = JobLedger(tmp_path / "ledger")
    _entry(ledger, "1", "running-session", tmp_path)  # this very process, alive
    assert ledger.claim("k", "new") is None
    _entry(ledger, "2", "mine", tmp_path, pid=_dead_pid())
    assert ledger.claim("k", "mine") is None  # two items of one session may run the same script at once
    assert ledger.claim("other-key", "new") is None


def test_an_owner_on_another_host_is_presumed_gone_after_its_heartbeat_stops(tmp_path: Path) -> None:
    ledger = JobLedger(tmp_path / "ledger", stale_s=60)
    entry = _entry(ledger, "5", "remote", tmp_path, host="login-node-2", pid=1)
    assert ledger.claim("k", "new") is None  # fresh heartbeat: it may be alive
    old = time.time() - 120
    os.utime(entry.path, (old, old))
    claimed = ledger.claim("k", "new")
    assert claimed is not None and claimed[0].job_id == "5"


def test_heartbeat_and_drop(tmp_path: Path) -> None:
    ledger = JobLedger(tmp_path / "ledger", stale_s=60)
    entry = _entry(ledger, "9", "s", tmp_path, host="elsewhere", pid=1)
    old = time.time() - 120
    os.utime(entry.path, (old, old))
    ledger.heartbeat(entry)
    assert ledger.claim("k", "new") is None
    ledger.drop(entry)
    assert not Path(entry.path).exists()
