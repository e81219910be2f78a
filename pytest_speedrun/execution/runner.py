"""Run a training script as a supervised subprocess: env contract, timeout, process-group kill, log, wall clock.

Every run gets its own session (and so its own process group), an explicit environment built from an
allow-list plus the env contract, its own working directory, and a timeout. When the run ends — normally,
by timeout, or because pytest is interrupted — the whole process group is killed, and on Linux so is any
descendant that escaped the group (found by a per-run marker in its environment), so no stray process keeps
holding a GPU or a port.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pytest_speedrun.errors import RunError
from pytest_speedrun.execution import pump
from pytest_speedrun.files import thread_env

# Variables a training run may inherit from the user's environment. Everything else (API keys included)
# is withheld: agent-written code runs with only what it needs.
PASSTHROUGH = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM",
    "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
    "CONDA_PREFIX", "VIRTUAL_ENV", "PYTHONPATH", "HF_HOME", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR",
)
PASSTHROUGH_PREFIXES = ("NCCL_", "CUDA_", "TORCH_", "SLURM_")
RUN_MARKER = "SPEEDRUN_RUN_ID"
SESSION_MARKER = "SPEEDRUN_SESSION_ID"
STORE_MARKER = "SPEEDRUN_STORE"  # which results store the run's session writes to
OWNER_MARKER = "SPEEDRUN_OWNER"  # the session's controller process, as pid:start time (pids are reused)
_TERM_GRACE_S = 5.0


@dataclass(frozen=True)
class RunSpec:
    """What to run and how."""

    script: Path
    workdir: Path
    log_path: Path
    env: dict[str, str]
    timeout_s: float
    nproc: int = 1
    python: str = sys.executable
    extra_args: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()  # sandbox wrapper, e.g. ("bwrap", ..., "--")
    max_memory_bytes: int | None = None  # RLIMIT_AS of the run's processes
    cpu_affinity: tuple[int, ...] = ()  # cores the run's processes may use (Linux)
    gpus: int = 0  # GPUs the run uses (leased here, or asked of Slurm)
    probes: bool = True  # the pump's CPU probes before and after the run (see pipeline.item.probes_consulted)
    on_progress: Callable[[float], None] | None = field(default=None, compare=False)  # called with elapsed s
    progress_every_s: float = 1.0


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, as seen by the harness (never by the script)."""

    exit_code: int | None
    wall_s: float
    log_path: Path
    timed_out: bool
    command: tuple[str, ...] = field(default_factory=tuple)
    job_id: str | None = None  # Slurm launcher: the job that ran it
    node: str | None = None  # Slurm launcher: the node it ran on
    reason: str = ""  # why the launcher ended it, when not the command itself (e.g. "Slurm state OUT_OF_MEMORY")
    reattached: bool = False  # Slurm launcher: a job of an earlier, interrupted session was waited on instead

    @property
    def finished(self) -> bool:
        return not self.timed_out and self.exit_code == 0


def contract_env(
    *, train_glob: str, val_glob: str, val_tokens: int, task_env: dict[str, str], seed: int,
    threads: int | None, base: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a training run: allow-listed user variables, the task's env and the contract."""
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k in PASSTHROUGH or k.startswith(PASSTHROUGH_PREFIXES)}
    env.update(task_env)
    env.update({
        "NANOGPT_TRAIN_FILES": train_glob,
        "NANOGPT_VAL_FILES": val_glob,
        "NANOGPT_VAL_TOKENS": str(task_env.get("NANOGPT_VAL_TOKENS", val_tokens)),
        "SPEEDRUN_SEED": str(seed),
        "PYTHONUNBUFFERED": "1",
    })
    if threads is not None:
        env.update(thread_env(threads))
    return env


def uses_torchrun(spec: RunSpec) -> bool:
    """Several processes, or any run on GPUs: the NanoGPT records read RANK, LOCAL_RANK and WORLD_SIZE from
    torchrun's environment even on one GPU (plain `python` makes them fail with KeyError: 'RANK')."""
    return spec.nproc > 1 or spec.gpus > 0


def command_for(spec: RunSpec) -> list[str]:
    """`python script` for one CPU process; `torchrun --standalone --nproc_per_node=N script` otherwise."""
    if not uses_torchrun(spec):
        return [*spec.prefix, spec.python, str(spec.script), *spec.extra_args]
    return [*spec.prefix, spec.python, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={spec.nproc}", str(spec.script), *spec.extra_args]


@lru_cache(maxsize=16)
def _has_torchrun(python: str) -> bool:
    probe = subprocess.run([python, "-c", "import torch.distributed.run"], capture_output=True, timeout=300)
    return probe.returncode == 0


def check_launcher(spec: RunSpec) -> None:
    """Fail early, in one line, when a multi-process run cannot find torchrun in the run's interpreter."""
    if uses_torchrun(spec) and not _has_torchrun(spec.python):
        raise RunError(f"torchrun is not available to {spec.python} (import torch.distributed.run failed); "
                       f"install torch there or set --speedrun-python; nproc_per_node={spec.nproc} on "
                       f"{spec.gpus} GPU(s) needs it")


def kill_session(session_id: str) -> int:
    """SIGKILL every process of any run of this pytest session (by the session marker); returns how many."""
    pids = _marked_pids(session_id, SESSION_MARKER)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(pids)


def process_token(pid: int | None = None) -> str:
    """`pid:start-time` of a process (this one by default): names it uniquely, unlike a pid, which is reused."""
    pid = os.getpid() if pid is None else pid
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "?"
    return f"{pid}:{start}"


def token_alive(token: str) -> bool:
    """Whether the process a `process_token` names still runs (and is not a zombie)."""
    pid_text, _, start = token.partition(":")
    try:
        pid = int(pid_text)
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (ValueError, OSError, IndexError):
        return False
    return fields[0] != "Z" and (start in ("", "?") or fields[19] == start)


def store_id(results_dir: Path) -> str:
    """A short name of a results store, carried by every run of a session that writes there."""
    return hashlib.sha256(str(Path(results_dir).resolve()).encode()).hexdigest()[:16]


def end_orphans(store: str) -> dict[str, int]:
    """SIGKILL the local runs of *dead* sessions of results store `store` (their controller is gone; e.g. pytest
    was SIGKILLed and a pump was killed with it). Runs of live sessions are left alone, and so are Slurm jobs
    (even on this node): they outlive their session on purpose. Returns, per session id, how many processes were
    ended."""
    ended: dict[str, int] = {}
    for entry in Path("/proc").glob("[0-9]*") if Path("/proc/self/environ").exists() else []:
        try:
            env = dict(kv.split(b"=", 1) for kv in (entry / "environ").read_bytes().split(b"\0") if b"=" in kv)
        except (OSError, ValueError):
            continue
        if env.get(STORE_MARKER.encode()) != store.encode() or int(entry.name) == os.getpid():
            continue
        owner = env.get(OWNER_MARKER.encode(), b"").decode()
        if (owner and token_alive(owner)) or b"SLURM_JOB_ID" in env:
            continue  # a live session's run; or a Slurm job, which --speedrun-resume re-attaches to
        try:
            os.kill(int(entry.name), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        session = env.get(SESSION_MARKER.encode(), b"?").decode()
        ended[session] = ended.get(session, 0) + 1
    return ended


def _marked_pids(marker: str, var: str = RUN_MARKER) -> list[int]:
    """PIDs whose environment carries `var=marker` (Linux /proc; empty elsewhere)."""
    needle = f"{var}={marker}".encode()
    pids = []
    for entry in Path("/proc").glob("[0-9]*") if Path("/proc/self/environ").exists() else []:
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return [p for p in pids if p != os.getpid()]


def kill_run(pgid: int, marker: str | None = None, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM the process group, give it a grace period, then SIGKILL it and any marked stragglers.

    `proc`, the group leader, is reaped while waiting: an unreaped zombie would keep the group "alive"."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + _TERM_GRACE_S
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            break
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if marker:
        for pid in _marked_pids(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def timeline_path(log_path: Path) -> Path:
    """Where the pump writes the arrival time (and log offset) of each output line of a run."""
    return log_path.with_suffix(".timeline")


def cpu_stats_path(log_path: Path) -> Path:
    """Where the pump writes the run's CPU time and run-queue delay."""
    return log_path.with_suffix(".cpu.json")


def pump_command(cmd: list[str], log_path: Path, marker: str, parent: int, cores: tuple[int, ...] = (),
                 max_memory_bytes: int | None = None, probes: bool = True) -> list[str]:
    """`cmd` under the pump (see pump.py), run by this interpreter: it needs only the standard library. The
    pump ends the run when `parent` dies; `probes` False skips its CPU probes (no `probe_s` in the stats)."""
    for stale in (timeline_path(log_path), cpu_stats_path(log_path)):
        stale.unlink(missing_ok=True)
    # -S: no site-packages and no .pth files. The pump imports only the standard library, and site's work (about
    # 40 ms of CPU here, more with many .pth files) would be paid on every run (issue 23).
    out = [sys.executable, "-S", str(Path(pump.__file__)), "--log", str(log_path), "--timeline",
           str(timeline_path(log_path)), "--stats", str(cpu_stats_path(log_path)), "--parent", str(parent),
           "--marker", marker]
    if cores:
        out += ["--cores", ",".join(map(str, cores))]
    if max_memory_bytes:
        out += ["--max-memory", str(max_memory_bytes)]
    if not probes:
        out += ["--probes", "0"]
    return [*out, "--", *cmd]


def read_cpu_stats(log_path: Path) -> dict[str, float]:
    """The pump's CPU accounting of a run ({} when absent: an older run, or a pump that was killed)."""
    try:
        data = json.loads(cpu_stats_path(log_path).read_text())
        return {k: float(v) for k, v in data.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def run(spec: RunSpec) -> RunOutcome:
    """Run `spec` to completion or timeout; stdout and stderr go to `spec.log_path`, line arrival times to its
    timeline. The run goes under the pump, which also ends it if this process dies."""
    check_launcher(spec)
    cmd = command_for(spec)
    marker = uuid.uuid4().hex
    env = dict(spec.env, **{RUN_MARKER: marker})
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    pumped = pump_command(cmd, spec.log_path, marker, os.getpid(), spec.cpu_affinity, spec.max_memory_bytes,
                          spec.probes)
    with open(spec.log_path, "ab") as log:  # the pump's own errors, if any, land in the run's log too
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(pumped, cwd=spec.workdir, env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as exc:
            raise RunError(f"cannot start {sys.executable!r}: {exc.strerror}") from None
        timed_out = False
        try:
            deadline = start + spec.timeout_s
            while True:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    timed_out = True
                    break
                try:
                    proc.wait(timeout=min(remaining, spec.progress_every_s) if spec.on_progress else remaining)
                    break
                except subprocess.TimeoutExpired:
                    if spec.on_progress is not None:
                        spec.on_progress(time.perf_counter() - start)
        finally:
            # Also on KeyboardInterrupt: the group dies with us, then the interrupt propagates.
            wall = time.perf_counter() - start
            kill_run(proc.pid, marker, proc)
            proc.wait()
    rc = proc.returncode
    if rc == pump.CANNOT_START:
        raise RunError(f"cannot start {cmd[0]!r}: {tail(spec.log_path, 1).removeprefix('pump: ')}; "
                       "check --speedrun-python")
    return RunOutcome(exit_code=None if timed_out else rc, wall_s=wall, log_path=spec.log_path,
                      timed_out=timed_out, command=tuple(cmd))


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log, for failure messages."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
