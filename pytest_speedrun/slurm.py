"""Run training commands as Slurm jobs through submitit (`--speedrun-launcher=slurm`).

The pytest session, the agent and the LLM calls stay where pytest runs; only the training command moves to a
Slurm node. The job runs exactly the command the local launcher would (python, or torchrun with
`--nproc_per_node` = the GPUs requested), with the same environment contract, in the same workspace, writing
the same log file; so workspace and results directory must be on a file system the nodes share. The harness
then parses and judges the log as for a local run.

Job states map to our statuses: COMPLETED -> the command's exit code; TIMEOUT -> timeout; FAILED, NODE_FAIL,
OUT_OF_MEMORY, CANCELLED -> a crash whose reason names the Slurm state. A PREEMPTED job is requeued once, then
reported as crashed. The job is cancelled (scancel, through submitit) when the item times out or pytest is
interrupted. `--speedrun-max-jobs` caps the jobs in flight across all xdist workers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from .errors import RunError, UsageError
from .runner import RunOutcome, RunSpec, command_for, kill_run

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


def _job(cmd: list[str], cwd: str, env: dict[str, str], log_path: str, timeout_s: float) -> dict:
    """What runs on the Slurm node: the command in its own process group, output appended to the shared log."""
    started_at = time.time()
    start = time.perf_counter()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            kill_run(proc.pid, env.get("SPEEDRUN_RUN_ID"), proc)
            proc.wait()
    return {"exit_code": None if timed_out else proc.returncode, "wall_s": time.perf_counter() - start,
            "timed_out": timed_out, "node": socket.gethostname(), "started_at": started_at}


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


class SlurmLauncher:
    """`launch(spec)` runs the spec's command as a Slurm job and waits for it; same contract as runner.run."""

    def __init__(self, config: SlurmConfig, slots_dir: Path) -> None:
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

    def _executor(self, spec: RunSpec):
        c = self.config
        executor = self.submitit.AutoExecutor(folder=str(c.folder), cluster="slurm")
        gpus = c.gpus_per_node if c.gpus_per_node is not None else (spec.nproc if "CUDA_VISIBLE_DEVICES" in
                                                                     spec.env and spec.env["CUDA_VISIBLE_DEVICES"]
                                                                     else 0)
        params: dict = {"timeout_min": max(1, int((spec.timeout_s + MARGIN_S) // 60)), "nodes": 1,
                        "tasks_per_node": 1, "slurm_job_name": f"speedrun-{spec.script.parent.parent.name}"}
        if gpus:
            params["gpus_per_node"] = gpus
        if c.cpus_per_task:
            params["cpus_per_task"] = c.cpus_per_task
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

    def launch(self, spec: RunSpec) -> RunOutcome:
        cmd = command_for(spec)
        env = dict(spec.env)
        env.pop("CUDA_VISIBLE_DEVICES", None)  # on the node, Slurm assigns the GPUs
        token = f"{os.getpid()}-{time.monotonic_ns()}"
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.slots.acquire(token, self.config.poll_s)
        try:
            executor = self._executor(spec)
            start = time.perf_counter()
            requeued = False
            while True:
                try:
                    job = executor.submit(_job, cmd, str(spec.workdir), env, str(spec.log_path), spec.timeout_s)
                except Exception as exc:  # sbatch missing, invalid partition, ...: one line
                    raise RunError(f"Slurm submission failed: {str(exc).strip().splitlines()[-1][:300]}") from None
                submitted = time.time()
                self._record(spec, {"job_id": str(job.job_id), "submitted": submitted})
                state = self._wait(job, start + spec.timeout_s + MARGIN_S)
                if state == "PREEMPTED" and not requeued:
                    requeued = True
                    continue
                break
            result = job.result() if state == "COMPLETED" else None
            record = {"job_id": str(job.job_id), "state": state, "submitted": submitted}
            if result is not None:  # submit-to-start latency: the launcher's own overhead per job
                record |= {"started": result["started_at"], "latency_s": round(result["started_at"] - submitted, 3),
                           "node": result["node"], "wall_s": round(result["wall_s"], 3)}
            self._record(spec, record)
            return outcome_for_state(state, result, spec, cmd, str(job.job_id), time.perf_counter() - start)
        finally:
            self.slots.release(token)

    def _wait(self, job, deadline: float) -> str:
        try:
            while not job.done():
                if time.perf_counter() > deadline:
                    job.cancel(check=False)
                    return "TIMEOUT (cancelled by the harness)"
                time.sleep(self.config.poll_s)
        except BaseException:
            job.cancel(check=False)  # pytest interrupted, item timeout: never leave the job running
            raise
        state = (job.state or "UNKNOWN").split()[0]
        if state == "UNKNOWN":  # no accounting (sacct) on this cluster: the job's own result file tells
            try:
                job.result()
                state = "COMPLETED"
            except Exception:
                state = "FAILED"
        return state

    @staticmethod
    def _record(spec: RunSpec, record: dict) -> None:
        """The job (id, state, node, submit-to-start latency) next to the log, for reports and people."""
        path = spec.log_path.with_suffix(".slurm.json")
        path.write_text(json.dumps(record, sort_keys=True) + "\n")
