"""Which Slurm jobs are in flight, on disk in the results directory, so `--speedrun-resume` can re-attach.

When pytest dies without cleaning up (SIGKILL, a lost ssh session, a crashed login node) its Slurm jobs keep
running. Each job in flight has an entry `<dir>/<run key>/<job id>.json` naming the job, its submitit folder,
the log it writes and the process waiting on it; the waiting process touches the entry every poll (a
heartbeat) and removes it when the job ends or is cancelled. So an entry that outlives its owner marks a job
nobody waits on.

A later run with the same run key (same script bytes, command settings and contract environment, see
`run_key`) claims such an entry instead of submitting the same work twice. An entry is orphaned when its owner
is a dead process on this host, or when its heartbeat is older than `stale_s` (an owner on another host).
Entries of the claiming session itself are never taken: two items of one session may run the same script at
the same time (the baseline agent under several hint regimes) and each needs its own job.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from pytest_speedrun.data.guard import full_sha256
from pytest_speedrun.execution.resources import pid_alive
from pytest_speedrun.execution.runner import OWNER_MARKER, RUN_MARKER, SESSION_MARKER, RunSpec
from pytest_speedrun.files import write_atomic

# Environment variables that differ between two sessions running the same work: markers and per-lease paths.
VOLATILE_ENV = (SESSION_MARKER, RUN_MARKER, OWNER_MARKER, "CUDA_VISIBLE_DEVICES", "TORCHINDUCTOR_CACHE_DIR",
                "TRITON_CACHE_DIR")


def run_key(spec: RunSpec) -> str:
    """What makes two runs the same work: the script's bytes, how it is launched and its contract env."""
    env = {k: v for k, v in spec.env.items() if k not in VOLATILE_ENV}
    blob = json.dumps({"script": full_sha256(spec.script), "nproc": spec.nproc, "timeout_s": spec.timeout_s,
                       "python": spec.python, "args": list(spec.extra_args), "env": env}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class JobEntry:
    run_key: str
    job_id: str
    folder: str  # submitit's folder of the job (its result pickle is there)
    log_path: str  # where the job appends the run's output
    session_id: str
    host: str
    pid: int
    submitted: float
    path: str = ""  # the entry's own file


class JobLedger:
    def __init__(self, directory: Path, stale_s: float = 60.0) -> None:
        self.directory, self.stale_s = directory, stale_s
        directory.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(directory / "ledger.lock"))

    def add(self, key: str, job_id: str, folder: Path, log_path: Path, session_id: str, submitted: float) -> JobEntry:
        path = self.directory / key / f"{job_id}.json"
        entry = JobEntry(run_key=key, job_id=job_id, folder=str(folder), log_path=str(log_path),
                         session_id=session_id, host=socket.gethostname(), pid=os.getpid(), submitted=submitted,
                         path=str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            self._write(entry)
        return entry

    def claim(self, key: str, session_id: str) -> tuple[JobEntry, str] | None:
        """Take over an orphaned job of `key` (not one of `session_id`); returns it and the session it came from."""
        folder = self.directory / key
        if not folder.is_dir():
            return None
        with self.lock:
            for path in sorted(folder.glob("*.json")):
                try:
                    entry = JobEntry(**json.loads(path.read_text()))
                    age = time.time() - path.stat().st_mtime
                except (OSError, ValueError, TypeError):
                    continue
                if entry.session_id == session_id:
                    continue
                dead_here = entry.host == socket.gethostname() and not pid_alive(entry.pid)
                if not (dead_here or age > self.stale_s):
                    continue
                mine = JobEntry(**(asdict(entry) | {"session_id": session_id, "host": socket.gethostname(),
                                                    "pid": os.getpid(), "path": str(path)}))
                self._write(mine)
                return mine, entry.session_id
        return None

    @staticmethod
    def heartbeat(entry: JobEntry) -> None:
        try:
            os.utime(entry.path)
        except OSError:
            pass

    def drop(self, entry: JobEntry) -> None:
        with self.lock:
            Path(entry.path).unlink(missing_ok=True)

    @staticmethod
    def _write(entry: JobEntry) -> None:
        write_atomic(Path(entry.path), json.dumps(asdict(entry), sort_keys=True) + "\n")
