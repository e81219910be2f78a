"""Run training commands as Slurm jobs through submitit (`--speedrun-launcher=slurm`).

The pytest session, the agent and the LLM calls stay where pytest runs; only the training command moves to a
Slurm node. The job runs exactly the command the local launcher would (python, or torchrun with
`--nproc_per_node` = the GPUs requested), with the same environment contract, in the same workspace, writing
the same log file; so workspace and results directory must be on a file system the nodes share. The harness
then parses and judges the log as for a local run.

Job states map to our statuses: COMPLETED -> the command's exit code; TIMEOUT -> timeout; FAILED, NODE_FAIL,
OUT_OF_MEMORY, CANCELLED -> a crash whose reason names the Slurm state. A PREEMPTED job is requeued once, then
reported as crashed. The job is cancelled (scancel, through submitit) when the item times out or pytest is
interrupted. `--speedrun-max-jobs` caps the jobs in flight across all xdist workers. States come from sacct
through submitit; on a cluster without accounting, from slurmctld (`scontrol show job`) every few seconds.

Jobs in flight are recorded in the results directory (slurm_ledger.py), so a session that died without
cancelling them (SIGKILL, a lost ssh session) leaves them findable: `--speedrun-resume` re-attaches to such
a job, or takes its result if it finished meanwhile, instead of submitting the same work twice.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from filelock import FileLock

from pytest_speedrun.errors import RunError, UsageError
from pytest_speedrun.execution.resources import node_timing_slot
from pytest_speedrun.execution.runner import (
    RUN_MARKER,
    SESSION_MARKER,
    RunOutcome,
    RunSpec,
    command_for,
    cpu_stats_path,
    kill_run,
    pump_command,
    timeline_path,
)
from pytest_speedrun.execution.slurm_ledger import JobLedger, run_key
from pytest_speedrun.files import thread_env

MARGIN_S = 300  # the Slurm time limit is the task timeout plus this


@dataclass(frozen=True)
class SlurmConfig:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_node: int | None = None  # default: the run's nproc when it leases GPUs
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    extra: dict[str, str] = field(default_factory=dict)  # more sbatch options, e.g. {"constraint": "h100"}
    setup: tuple[str, ...] = ()  # shell lines run before the command (module load, conda activate)
    folder: Path | None = None  # submitit's job folder (scripts, pickles, Slurm logs); shared file system
    max_jobs: int | None = None  # jobs in flight across the session
    poll_s: float = 1.0


def parse_extra(items: list[str]) -> dict[str, str]:
    """`key=value` sbatch options from ini lines or repeated options."""
    extra = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"speedrun_slurm_extra: {item!r} is not key=value (e.g. constraint=h100)")
        extra[key.strip().lstrip("-")] = value.strip()
    return extra


# Taken from the job's own environment on the node (after the setup lines ran), not from the machine running
# pytest: where software lives (module load, conda activate), the GPUs Slurm assigned, the job's SLURM_* view.
NODE_ENV = ("PATH", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH", "CONDA_PREFIX", "VIRTUAL_ENV", "PYTHONPATH",
            "HOME", "USER", "LOGNAME", "TMPDIR", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
            "GPU_DEVICE_ORDINAL", "ROCR_VISIBLE_DEVICES")


def node_env(env: dict[str, str], node: dict[str, str]) -> dict[str, str]:
    """The run's environment on the node: the contract from the controller, the node's own NODE_ENV and SLURM_*."""
    merged = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    merged.update({k: v for k, v in node.items() if k in NODE_ENV or k.startswith("SLURM_")})
    return merged


def _job(cmd: list[str], cwd: str, env: dict[str, str], log_path: str, timeout_s: float) -> dict:
    """What runs on the Slurm node: the command under the pump in its own process group, output appended to the
    shared log, line arrival times taken here on the node (so the timeline is as exact as a local run's). A
    timed CPU run first takes a timing slot of the node (resources.node_timing_slot): runs take turns on the
    node that runs them, with the node's local sessions too."""
    started_at = time.time()
    env = dict(env)
    with node_timing_slot(env) as slot_wait_s:
        env = node_env(env, dict(os.environ))
        start = time.perf_counter()
        pumped = pump_command(cmd, Path(log_path), env.get(RUN_MARKER, ""), os.getpid())
        # Each attempt writes the whole log: a requeued job (preempted) must not append to the partial first
        # one, whose step lines would then go backwards.
        Path(log_path).write_bytes(b"")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(pumped, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            timed_out = False
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                kill_run(proc.pid, env.get("SPEEDRUN_RUN_ID"), proc)
                proc.wait()
        wall_s = time.perf_counter() - start
    return {"exit_code": None if timed_out else proc.returncode, "wall_s": wall_s, "timed_out": timed_out,
            "node": socket.gethostname(), "started_at": started_at, "slot_wait_s": slot_wait_s}


class _JobSlots:
    """A counting semaphore over files under `directory`, shared by all xdist workers (`--speedrun-max-jobs`)."""

    def __init__(self, directory: Path, limit: int | None) -> None:
        self.directory, self.limit = directory, limit
        directory.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(directory / "slots.lock"))
        self.state = directory / "slots.json"

    def acquire(self, token: str, poll_s: float) -> None:
        if self.limit is None:
            return
        while True:
            with self.lock:
                held = json.loads(self.state.read_text()) if self.state.exists() else []
                if len(held) < self.limit:
                    self.state.write_text(json.dumps(held + [token]))
                    return
            time.sleep(poll_s)

    def release(self, token: str) -> None:
        if self.limit is None:
            return
        with self.lock:
            held = json.loads(self.state.read_text()) if self.state.exists() else []
            self.state.write_text(json.dumps([t for t in held if t != token]))


STATE_CRASHED = {"FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "CANCELLED", "BOOT_FAIL", "DEADLINE", "REVOKED"}


def outcome_for_state(state: str, result: dict | None, spec: RunSpec, cmd: list[str], job_id: str,
                      wall_s: float) -> RunOutcome:
    """Our view of a finished job. A job that Slurm ended is a crash or a timeout, with its state as reason."""
    base = dict(log_path=spec.log_path, command=tuple(cmd), job_id=job_id)
    if result is not None and state == "COMPLETED":
        return RunOutcome(exit_code=result["exit_code"], wall_s=result["wall_s"], timed_out=result["timed_out"],
                          node=result["node"], **base)
    if state.startswith("TIMEOUT"):
        return RunOutcome(exit_code=None, wall_s=wall_s, timed_out=True, reason=f"Slurm state {state}", **base)
    return RunOutcome(exit_code=-1, wall_s=wall_s, timed_out=False, reason=f"Slurm state {state}", **base)


ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED",
          "STAGE_OUT", "SIGNALING"}
CONTROLLER_EVERY_S = 5.0  # how often to ask slurmctld directly when sacct (accounting) has no state


def controller_state(job_id: str) -> str | None:
    """The job's state from slurmctld (`scontrol show job`), for clusters without accounting; None if unknown."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for field_ in out.stdout.split():
        if field_.startswith("JobState="):
            return field_.split("=", 1)[1]
    return None


class SlurmLauncher:
    """`launch(spec)` runs the spec's command as a Slurm job and waits for it; same contract as runner.run.

    With a ledger (see slurm_ledger.py) every job in flight is recorded in the results directory; with
    `reattach`, a run whose identical job an interrupted session left running (or finished) waits on that job
    instead of submitting a second one."""

    def __init__(self, config: SlurmConfig, slots_dir: Path, ledger: JobLedger | None = None,
                 reattach: bool = False) -> None:
        try:
            import submitit
        except ImportError:
            raise UsageError("--speedrun-launcher=slurm needs submitit: pip install 'pytest-speedrun[slurm]'") \
                from None
        if config.folder is None:
            raise UsageError("--speedrun-launcher=slurm needs a job folder on a shared file system "
                             "(--speedrun-slurm-folder or ini speedrun_slurm_folder)")
        self.submitit, self.config = submitit, config
        self.slots = _JobSlots(slots_dir, config.max_jobs)
        self.ledger, self.reattach = ledger, reattach

    def _cpus(self, spec: RunSpec) -> int | None:
        """CPUs per task: the configured value, else the threads the run was planned with (OMP_NUM_THREADS), so
        a cluster that confines jobs to their CPUs never squeezes N threads onto fewer cores."""
        if self.config.cpus_per_task:
            return self.config.cpus_per_task
        threads = spec.env.get("OMP_NUM_THREADS", "")
        return int(threads) if threads.isdigit() and int(threads) > 0 else None

    def _executor(self, spec: RunSpec):
        c = self.config
        executor = self.submitit.AutoExecutor(folder=str(c.folder), cluster="slurm")
        gpus = c.gpus_per_node if c.gpus_per_node is not None else spec.gpus
        params: dict = {"timeout_min": max(1, int((spec.timeout_s + MARGIN_S) // 60)), "nodes": 1,
                        "tasks_per_node": 1, "slurm_job_name": f"speedrun-{spec.script.parent.parent.name}"}
        if gpus:
            params["gpus_per_node"] = gpus
        cpus = self._cpus(spec)
        if cpus:
            params["cpus_per_task"] = cpus
        if c.mem_gb:
            params["mem_gb"] = c.mem_gb
        if c.partition:
            params["slurm_partition"] = c.partition
        extra = dict(c.extra)
        if c.account:
            extra["account"] = c.account
        if c.qos:
            extra["qos"] = c.qos
        if extra:
            params["slurm_additional_parameters"] = extra
        if c.setup:
            params["slurm_setup"] = list(c.setup)
        executor.update_parameters(**params)
        return executor

    def _job_env(self, spec: RunSpec) -> dict[str, str]:
        env = dict(spec.env)
        env.pop("CUDA_VISIBLE_DEVICES", None)  # on the node, Slurm assigns the GPUs
        cpus = self._cpus(spec)
        if cpus:  # the threads match the CPUs the job asked for
            env.update(thread_env(cpus))
        return env

    def _claim(self, key: str, session: str):
        """An orphaned job of the same work that can still give its result, or None (see slurm_ledger.py)."""
        if not (self.reattach and self.ledger):
            return None
        while (claimed := self.ledger.claim(key, session)) is not None:
            entry, _ = claimed
            job = self.submitit.SlurmJob(folder=entry.folder, job_id=entry.job_id)
            if job.paths.result_pickle.exists() or (controller_state(entry.job_id) or
                                                    (job.state or "UNKNOWN").split()[0]) in ACTIVE:
                return claimed, job
            self.ledger.drop(entry)  # ended without a result (cancelled, failed, forgotten): run it afresh
        return None

    def launch(self, spec: RunSpec) -> RunOutcome:
        cmd = command_for(spec)
        env = self._job_env(spec)
        session = spec.env.get(SESSION_MARKER, "")
        key = run_key(spec) if self.ledger else ""
        token = f"{os.getpid()}-{time.monotonic_ns()}"
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.slots.acquire(token, self.config.poll_s)
        entry = None
        try:
            start = time.perf_counter()
            attached = self._claim(key, session)
            reattached_from = None
            if attached is not None:
                (entry, reattached_from), job = attached
                submitted = entry.submitted
            requeued = False
            while True:
                if entry is None:
                    executor = self._executor(spec)
                    try:
                        job = executor.submit(_job, cmd, str(spec.workdir), env, str(spec.log_path), spec.timeout_s)
                    except Exception as exc:  # sbatch missing, invalid partition, ...: one line
                        raise RunError(f"Slurm submission failed: {str(exc).strip().splitlines()[-1][:300]}") \
                            from None
                    submitted = time.time()
                    if self.ledger:
                        entry = self.ledger.add(key, str(job.job_id), self.config.folder, spec.log_path, session,
                                                submitted)
                record = {"job_id": str(job.job_id), "submitted": submitted}
                if reattached_from is not None:
                    record["reattached_from_session"] = reattached_from
                self._record(spec, record)
                state = self._wait(job, start + spec.timeout_s + MARGIN_S, entry,
                                   spec.on_progress if reattached_from is None else None)
                # A job that Slurm ended without a result gets one more submission if it was preempted, or if
                # it was an orphan this session re-attached to (its end is no verdict on this session's run).
                orphan_lost = reattached_from is not None and (state in STATE_CRASHED or state == "PREEMPTED")
                if orphan_lost or (state == "PREEMPTED" and not requeued):
                    requeued = requeued or not orphan_lost
                    if orphan_lost:  # this session's own run starts now, with its whole time limit
                        start = time.perf_counter()
                    reattached_from = None
                    if entry is not None:
                        self.ledger.drop(entry)
                        entry = None
                    continue
                break
            result = job.result() if state == "COMPLETED" else None
            if reattached_from is not None and entry is not None and Path(entry.log_path) != spec.log_path:
                for src, dst in ((Path(entry.log_path), spec.log_path),  # the harness reads this run's own files
                                 (timeline_path(Path(entry.log_path)), timeline_path(spec.log_path)),
                                 (cpu_stats_path(Path(entry.log_path)), cpu_stats_path(spec.log_path))):
                    if src.exists():
                        shutil.copyfile(src, dst)
            record |= {"state": state}
            if result is not None:  # submit-to-start latency: the launcher's own overhead per job
                record |= {"started": result["started_at"], "latency_s": round(result["started_at"] - submitted, 3),
                           "node": result["node"], "wall_s": round(result["wall_s"], 3),
                           "slot_wait_s": round(result.get("slot_wait_s", 0.0), 3)}
            self._record(spec, record)
            outcome = outcome_for_state(state, result, spec, cmd, str(job.job_id), time.perf_counter() - start)
            return replace(outcome, reattached=reattached_from is not None)
        finally:
            if entry is not None and self.ledger is not None:
                self.ledger.drop(entry)
            self.slots.release(token)

    def _state(self, job, asked: list[float]) -> str | None:
        """A terminal state that sacct does not report (no accounting), from slurmctld at most every few s."""
        if (job.state or "UNKNOWN").split()[0] != "UNKNOWN" or time.perf_counter() - asked[0] < CONTROLLER_EVERY_S:
            return None
        asked[0] = time.perf_counter()
        state = controller_state(str(job.job_id))
        if state is None or state in ACTIVE or state == "COMPLETED":  # COMPLETED: its result file is on its way
            return None
        return state

    def _wait(self, job, deadline: float, entry, on_progress) -> str:
        asked = [time.perf_counter()]
        begun = time.perf_counter()
        try:
            while not job.done():
                if time.perf_counter() > deadline:
                    job.cancel(check=False)
                    return "TIMEOUT (cancelled by the harness)"
                ended = self._state(job, asked)
                if ended is not None:
                    return ended
                if entry is not None:
                    self.ledger.heartbeat(entry)
                if on_progress is not None:
                    on_progress(time.perf_counter() - begun)
                time.sleep(self.config.poll_s)
        except BaseException:
            job.cancel(check=False)  # pytest interrupted, item timeout: never leave the job running
            raise
        state = (job.state or "UNKNOWN").split()[0]
        if state == "UNKNOWN":  # no accounting (sacct) on this cluster: slurmctld and the job's result file tell
            try:
                result = job.result()
            except Exception:
                result = None
            ended = controller_state(str(job.job_id))
            if result is not None and result["exit_code"] is not None and result["exit_code"] < 0:
                # the command died by a signal: if Slurm sent it (scancel, preemption), its state says why
                for _ in range(10):
                    if ended not in ACTIVE:
                        break
                    time.sleep(0.5)
                    ended = controller_state(str(job.job_id))
            if ended is not None and ended not in ACTIVE and ended != "COMPLETED":
                state = ended
            else:
                state = "COMPLETED" if result is not None else "FAILED"
        return state

    @staticmethod
    def _record(spec: RunSpec, record: dict) -> None:
        """The job (id, state, node, submit-to-start latency) next to the log, for reports and people."""
        path = spec.log_path.with_suffix(".slurm.json")
        path.write_text(json.dumps(record, sort_keys=True) + "\n")


# File systems Slurm nodes commonly share; a path on any other one is visible to the nodes only when it lies on
# the same mount as the job folder, which the user already keeps on a shared file system.
SHARED_FS = frozenset({"nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "glusterfs", "fuse.glusterfs",
                       "wekafs", "panfs", "fuse.sshfs", "virtiofs", "9p", "cvmfs", "fuse.juicefs", "orangefs"})


def mount_of(path: Path, mounts_file: Path = Path("/proc/mounts")) -> tuple[str, str]:
    """(mount point, file system type) of the deepest mount holding `path` (("/", "") when unknown)."""
    best = ("/", "")
    try:
        lines = mounts_file.read_text().splitlines()
    except OSError:
        return best
    text = str(path)
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = text == point or text.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, parts[2])
    return best


def interpreter_paths(python: str) -> list[Path]:
    """An interpreter and what it needs at run time: its venv's base Python (pyvenv.cfg's `home`), resolved."""
    path = Path(python).expanduser().absolute()
    paths = [path, path.resolve()]
    cfg = path.parent.parent / "pyvenv.cfg"
    try:
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                paths.append(Path(value.strip()).resolve())
    except OSError:
        pass
    return list(dict.fromkeys(paths))


def check_visible_to_nodes(choice, settings, mounts_file: Path = Path("/proc/mounts")) -> None:
    """Under `--speedrun-launcher=slurm`, a runtime's interpreter (built into the cache, or mapped) and its base
    Python must be where the nodes can see them: on a shared file system, or on the job folder's mount. A
    UsageError naming the path and the fix otherwise. pytest's own interpreter is the user's choice of Slurm
    setup (`speedrun_slurm_setup`) and is not checked."""
    from pytest_speedrun.judging.status import BUILT, MAPPED

    if choice.kind not in (BUILT, MAPPED):
        return
    folder = (settings.slurm.folder if settings.slurm is not None else None) or settings.results_dir
    job_mount = mount_of(Path(folder).absolute(), mounts_file)
    for path in interpreter_paths(choice.python):
        point, fstype = mount_of(path, mounts_file)
        if fstype in SHARED_FS or (point, fstype) == job_mount:
            continue
        fix = ("build it with --cache-dir on a shared file system" if choice.kind == BUILT
               else "map an interpreter on a shared file system")
        raise UsageError(f"runtime {choice.runtime}: {path} lies on {point} ({fstype or 'unknown'}), which Slurm "
                         f"nodes may not see (the job folder is on {job_mount[0]}); {fix}, or set "
                         "--speedrun-python to an interpreter the nodes share")
