"""Per-session state and the path from a collected item to its result, without pytest.

The controller creates the session (id, start time, GPU list, lease-pool directory) and hands the same
`SessionInfo` to every xdist worker, so all of them share one pool, one results session and one cleanup
marker.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pytest_speedrun.agents.base import Agent
from pytest_speedrun.data.dataset import Dataset, ensure_tiny_dataset, fineweb_dataset
from pytest_speedrun.errors import AgentError, MissingInput, SpeedrunError
from pytest_speedrun.execution.answers import session_answer_holders
from pytest_speedrun.execution.resources import (
    LeasePool,
    cpu_threads,
    discover_gpus,
    fake_run_cores,
    machine_pool_dir,
    no_lease,
    node_slot_lease,
    run_cores,
)
from pytest_speedrun.execution.runner import end_orphans, kill_session, process_token, store_id
from pytest_speedrun.execution.runner import run as runner_run
from pytest_speedrun.execution.runtime import RuntimeChoice, RuntimeChooser, materialise
from pytest_speedrun.execution.sandbox import probe as probe_sandbox
from pytest_speedrun.judging.status import CURRENT, PASSED, SLURM
from pytest_speedrun.pipeline.calibrate import Calibrator
from pytest_speedrun.pipeline.item import (
    SCRIPT_NAME,
    Execution,
    ItemRequest,
    RunSettings,
    agent_error_result,
    config_key,
    execute_script,
    run_item,
)
from pytest_speedrun.pipeline.replay import find_interrupted
from pytest_speedrun.pipeline.smoke import run_smoke, smoke_dataset, smoke_task
from pytest_speedrun.results.record import ItemResult
from pytest_speedrun.results.store import append_record, find_completed, item_dir, new_session_id
from pytest_speedrun.settings import Settings, default_data_dir
from pytest_speedrun.tasks.fetch import resolve_task
from pytest_speedrun.tasks.hints import regime_label, with_external_hints
from pytest_speedrun.tasks.manifest import Task, adhoc_task, load_suite


@dataclass(frozen=True)
class SessionInfo:
    """What the controller shares with workers (plain JSON values, for xdist's workerinput). `pool_dir` is the
    session's own scratch directory (Slurm job slots); leases come from the machine-wide pool."""

    session_id: str
    started: float
    pool_dir: str
    gpus: tuple[str, ...]
    owner: str = ""  # the controller process (runner.process_token): runs outliving it are orphans

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> SessionInfo:
        return cls(session_id=data["session_id"], started=data["started"], pool_dir=data["pool_dir"],
                   gpus=tuple(data["gpus"]), owner=data.get("owner", ""))

    @classmethod
    def create(cls, gpus_override: str | None) -> SessionInfo:
        return cls(session_id=new_session_id(), started=time.time(),
                   pool_dir=tempfile.mkdtemp(prefix="speedrun-pool-"), gpus=tuple(discover_gpus(gpus_override)),
                   owner=process_token())


class SpeedrunSession:
    def __init__(self, settings: Settings, agent: Agent | None, info: SessionInfo, workers: int = 1,
                 owner: bool = True) -> None:
        self.settings, self.agent, self.info, self.owner = settings, agent, info, owner
        self.workers = max(1, workers)
        # One pool per host: its cores, its GPUs and its timing slot (timed CPU runs take turns, resources.py).
        self.pool = LeasePool(machine_pool_dir(), gpus=list(info.gpus), cores=run_cores(),
                              timed_runs=settings.timed_runs, pin=fake_run_cores() is None)
        self._slurm = None  # a SlurmLauncher, made on first use (launcher())
        self.runtimes = RuntimeChooser.from_settings(settings)

    def launcher(self):
        """How training commands run: a local subprocess, or a Slurm job (created once per process)."""
        if self.settings.launcher != SLURM:
            return runner_run
        if self._slurm is None:
            from pytest_speedrun.execution.slurm import SlurmConfig, SlurmLauncher
            from pytest_speedrun.execution.slurm_ledger import JobLedger

            config = self.settings.slurm or SlurmConfig()
            if config.folder is None:
                config = replace(config, folder=self.settings.results_dir / self.info.session_id / "slurm")
            self._slurm = SlurmLauncher(config, Path(self.info.pool_dir) / "slurm-slots",
                                        ledger=JobLedger(self.settings.results_dir / "slurm-jobs"),
                                        reattach=self.settings.resume)
        return self._slurm.launch

    def needs(self, task: Task) -> tuple[int, int]:
        """(GPUs, CPU cores) one run of `task` needs. Tasks that name supported GPU counts require GPUs. The
        others (the tiny suite) run on the CPU, one pinned thread, unless `--speedrun-gpus` was given: a GPU
        found through CUDA_VISIBLE_DEVICES or nvidia-smi alone is not used for them (one host's GPU timed a tiny
        record at about 7% CV, launch-bound; one pinned CPU thread at 0.79%: docs/timing.md). Under Slurm the
        GPUs are the job's, not this machine's: only tasks that require them ask for them."""
        nproc = self.settings.nproc or task.launch.nproc_per_node
        supported = task.launch.supported_gpu_counts
        if supported and nproc not in supported:
            raise MissingInput(f"task {task.id} supports {', '.join(map(str, supported))} GPU(s), not {nproc} "
                               "(--speedrun-nproc); its semantics are never changed to fit")
        chosen_gpus = bool(self.info.gpus) and self.settings.gpus is not None and self.settings.launcher != SLURM
        gpus = nproc if supported or chosen_gpus else 0
        return gpus, self.needs_cores()

    def needs_cores(self) -> int:
        return cpu_threads(self.settings.threads)

    def dataset(self, task: Task) -> Dataset:
        if task.dataset == "tiny":
            return ensure_tiny_dataset(self.settings.cache_dir)
        data_dir = self.settings.data_dir
        if data_dir is None and default_data_dir().is_dir():
            data_dir = default_data_dir()
        return fineweb_dataset(data_dir, task.train_shards)

    def materialise(self, task: Task) -> tuple[Task, RuntimeChoice]:
        """The task with its pinned scripts cached (a skip naming the fetch command otherwise), its runtime
        chosen (a skip naming the build command when it cannot run here) and its compat fixes applied."""
        task = resolve_task(task, self.settings.cache_dir)
        choice = self.runtimes.choose(task)
        if self.settings.launcher == SLURM:
            from pytest_speedrun.execution.slurm import check_visible_to_nodes

            check_visible_to_nodes(choice, self.settings)
        return materialise(task, choice, self.settings.cache_dir), choice

    def run_settings(self, task: Task, who: str, on_wait=None, dataset: Dataset | None = None,
                     progress=None, runtime: RuntimeChoice | None = None) -> RunSettings:
        gpus, cores = self.needs(task)
        slurm = self.settings.launcher == SLURM  # the job gets its GPUs and cores from Slurm, not from here
        if not slurm and gpus > len(self.info.gpus):
            raise MissingInput(f"task {task.id} needs {gpus} GPU(s), this machine offers {len(self.info.gpus)}"
                               + (f" (runtime: {task.launch.runtime})" if task.launch.runtime else ""))
        s = self.settings
        if slurm:  # a CPU job takes its timing slot on the node that runs it (slurm._job)
            lease = no_lease if gpus else (lambda: node_slot_lease(s.timed_runs))
        else:  # timed runs hold the host's timing slot (CPU runs only); a command agent's work holds cores alone
            lease = lambda: self.pool.lease(gpus, cores, who=who, on_wait=on_wait, timed=True)  # noqa: E731
        return RunSettings(
            dataset=dataset or self.dataset(task), threads=cores, python=runtime.python if runtime else s.python,
            runtime=runtime, timeout_s=s.timeout_s, nproc=s.nproc,
            sandbox=probe_sandbox(s.sandbox).configured(session_answer_holders(s), s.agent_network),
            max_memory_bytes=s.max_memory_bytes, lease=lease,
            agent_lease=None if slurm else (lambda: self.pool.lease(gpus, cores, who=who, on_wait=on_wait)),
            timing=self.timing(gpus), compile_cache=compile_cache(s.cache_dir, runtime),
            session_id=self.info.session_id, progress=progress,
            store=store_id(s.results_dir), owner=self.info.owner,
            launch=self.launcher(), gpus=gpus if slurm else None,
            placement=self._slurm_placement(gpus) if slurm else None,
        )

    def timing(self, gpus: int) -> tuple[tuple[str, str], ...]:
        """How this session's runs are timed beyond the machine, where it differs from the default (the
        calibration fingerprint keeps such references apart): more than one timed run at once, and CPU runs on
        a host whose GPUs the session sees (before issue 20 the tiny suite ran on those GPUs)."""
        out = []
        if self.settings.timed_runs != 1 and not gpus:
            out.append(("timed_runs", str(self.settings.timed_runs)))
        if self.info.gpus and not gpus and self.settings.launcher != SLURM:
            out.append(("device", "cpu"))
        return tuple(out)

    def _slurm_placement(self, gpus: int) -> dict[str, str]:
        """The kind of Slurm job runs go to (what decides their speed), for the calibration fingerprint."""
        from pytest_speedrun.execution.slurm import SlurmConfig

        c = self.settings.slurm or SlurmConfig()
        return {"launcher": SLURM, "partition": c.partition or "", "qos": c.qos or "",
                "gpus": str(c.gpus_per_node if c.gpus_per_node is not None else gpus),
                "cpus": str(c.cpus_per_task or ""), "extra": json.dumps(sorted(c.extra.items())),
                "setup": json.dumps(list(c.setup))}

    def run(self, task: Task, regime: tuple[int, ...], seed: int, name: str, on_wait=None,
            previous: Task | None = None, progress=None) -> ItemResult:
        """Everything an item does: resume lookup, data, reference times (calibrating if needed), the agent,
        the runs. `previous` is the task before this one in the suite (cumulative mode)."""
        s = self.settings
        if s.smoke:
            return self.run_smoke(task, name, on_wait, progress)
        assert self.agent is not None
        task, runtime = self.materialise(task)
        task = with_external_hints(task, s.hints_dir)
        start_script, start_source = self._cumulative_start(task, regime, seed, previous)
        key = config_key(task, self.agent, regime, seed, s.repeats, start_script)
        interrupted = None
        if s.resume:
            record = find_completed(s.results_dir, key)
            if record is not None:  # reported (and noted in the store) as resumed, not run again
                result = ItemResult.from_json(record, resumed=True)
                append_record(s.results_dir, result.to_json())
                return result
            interrupted = find_interrupted(s.results_dir, key)  # its finished runs and LLM answers are reused
        preflight = getattr(self.agent, "preflight", None)
        if preflight is not None:  # e.g. a missing API key: fail before calibrating or running anything
            try:
                preflight()
            except AgentError as exc:
                return agent_error_result(task, self.agent, regime, seed, str(exc),
                                          item_dir(s.results_dir, self.info.session_id, name), key, start_source)
        run_settings = self.run_settings(task, name, on_wait, progress=progress, runtime=runtime)
        control = control_task(task, s.cache_dir)
        if control is not None:  # the control runs in the same interpreter, with the same fixes as the task's
            control = materialise(control, self.runtimes.choose(control), s.cache_dir)
        calibrator = Calibrator(cache_dir=s.cache_dir, settings=run_settings, runs=s.calibration_runs,
                                force_before=self.info.started if s.calibrate else None,
                                control=control, session_started=self.info.started,
                                recheck_after_s=s.recheck_after_s)
        reference = calibrator.reference(task)
        result = run_item(ItemRequest(
            task=task, agent=self.agent, regime=regime, seed=seed, settings=run_settings, reference=reference,
            artifacts_dir=item_dir(s.results_dir, self.info.session_id, name), agent_timeout_s=s.agent_timeout_s,
            allow_suspicious=s.allow_suspicious, repeats=s.repeats, start_script=start_script,
            start_source=start_source, resume_from=interrupted, config_key=key,
            witness=calibrator.witness_timer(task, reference),
        ))
        if s.cumulative and result.status == PASSED:
            chain = self._chain_dir(task.suite, regime, seed)
            chain.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(result.artifact_dir) / "solution.py", chain / f"{task.id}.py")
        return result

    def run_smoke(self, task: Task, name: str, on_wait=None, progress=None) -> ItemResult:
        """A few steps of the task's start script on small generated shards (see smoke.py)."""
        s = self.settings
        dataset = smoke_dataset(s.cache_dir, task.dataset)
        task, runtime = self.materialise(task)
        task = smoke_task(task, dataset)
        settings = self.run_settings(task, name, on_wait, dataset=dataset, progress=progress, runtime=runtime)
        settings = replace(settings, timeout_s=s.timeout_s or 900.0)
        return run_smoke(task, settings, item_dir(s.results_dir, self.info.session_id, name))

    def _chain_dir(self, suite: str, regime: tuple[int, ...], seed: int) -> Path:
        chain = f"{suite}-h{regime_label(regime)}-s{seed}"
        return self.settings.results_dir / self.info.session_id / "cumulative" / chain

    def _cumulative_start(self, task: Task, regime: tuple[int, ...], seed: int,
                          previous: Task | None) -> tuple[Path | None, str]:
        """Cumulative mode: start from the agent's passing solution of the previous task of this session, if
        there is one; otherwise from the human record (and say so)."""
        if not self.settings.cumulative or previous is None:
            return None, ""
        candidate = self._chain_dir(task.suite, regime, seed) / f"{previous.id}.py"
        if candidate.exists():
            return candidate, f"{previous.id} solution ({self.agent.name if self.agent else ''})"
        return None, f"record {task.start.record} (no passing {previous.id} solution in this session)"

    def run_script(self, script: Path, *, target_val_loss: float, workdir: Path, nproc: int = 1,
                   timeout_s: float = 3600.0, seed: int = 0, data: str | Path = "tiny",
                   env: dict[str, str] | None = None, who: str = "") -> Execution:
        """Run one script under the harness (lease, env contract, timeout, log capture, parsing, judging)."""
        dataset = "tiny" if data == "tiny" else "fineweb"
        task = adhoc_task(script, target_val_loss=target_val_loss, nproc=nproc, timeout_s=timeout_s, env=env,
                          dataset=dataset)
        settings = self.run_settings(task, who or script.name)
        if dataset == "fineweb":
            settings = replace(settings, dataset=fineweb_dataset(Path(data), 1))
        settings = replace(settings, timeout_s=timeout_s, nproc=nproc)
        workdir.mkdir(parents=True, exist_ok=True)
        local = workdir / SCRIPT_NAME
        if local.resolve() != Path(script).resolve():
            shutil.copyfile(script, local)
        return execute_script(local, task, settings, seed, workdir / "run.log")

    def progress_log(self, worker: str) -> Path:
        """Where a worker's live progress lines go under xdist (named in the summary)."""
        return self.settings.results_dir / self.info.session_id / f"progress-{worker}.log"

    def end_orphans(self) -> str:
        """Before anything is timed: end local runs that dead sessions of this results store left running (they
        would compete with this session's timed runs). One line saying what was ended, or ""."""
        ended = end_orphans(store_id(self.settings.results_dir))
        if not ended:
            return ""
        return (f"speedrun: ended {sum(ended.values())} process(es) of runs left running by dead session(s) "
                f"{', '.join(sorted(ended))} of this results store")

    def close(self) -> None:
        """Release this process's leases. The owner (the controller, or the only process) also kills anything a
        run of the session left behind (e.g. under a worker that crashed) and removes the pool; a worker must
        not, since other workers may still be running."""
        self.pool.release_all()
        if self.owner:
            kill_session(self.info.session_id)
            shutil.rmtree(self.info.pool_dir, ignore_errors=True)


def compile_cache(cache_dir: Path, runtime: RuntimeChoice | None) -> Path:
    """The inductor/triton cache root of a task's runs: one per runtime, torch and set of compat fixes. inductor
    served a graph compiled with a record's unfixed fake to its fixed copy when both shared a cache (torch 2.13,
    CPU), so a fixed script never shares one with the original, nor one torch with another."""
    root = cache_dir / "compile"
    if runtime is None or (not runtime.runtime and not runtime.compat):
        return root
    key = "-".join(p for p in (runtime.runtime or CURRENT, runtime.torch, "+".join(runtime.compat)) if p)
    return root / re.sub(r"[^A-Za-z0-9_.+-]", "_", key)[:120]


def control_task(task: Task, cache_dir: Path) -> Task | None:
    """The task of `task`'s suite whose target record is the cheapest to run (by its manifest train time): its
    runs are the session's control check of cached reference times (calibrate.py). None for ad-hoc tasks."""
    try:
        tasks = [t for t in load_suite(task.manifest.parent) if t.reference == task.reference]
    except SpeedrunError:
        return None
    tasks = [t for t in tasks if t.target.script.path is not None]
    return resolve_task(min(tasks, key=lambda t: (t.target.train_time_ms, t.id)), cache_dir) if tasks else None


def outer_timeout_s(task: Task, settings: Settings, margin_s: float = 300.0) -> float:
    """pytest-timeout's outer safety net for an item: the agent, the calibration runs it may trigger and the run
    itself, plus a margin. The harness's own process-group kill at the run timeout comes first."""
    run_s = settings.timeout_s or task.launch.timeout_s
    # both records (re-measured with more runs after an inverted first measurement), the session's control check
    calibration_runs = 2 * max(settings.calibration_runs, 3) + 3 if task.reference == "calibrate" else 0
    # the witness, and a search's chosen node run again to sit next to it (docs/timing.md, "Witness")
    witness_runs = 2 if task.reference == "calibrate" else 0
    return settings.agent_timeout_s + run_s * (1 + calibration_runs + witness_runs) + margin_s
