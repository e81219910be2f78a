"""Orchestrate one benchmark item end to end, without pytest.

workspace → agent → run → parse → judge → score → record. The plugin only wires pytest to `run_item` and
turns the returned `ItemResult` into an assertion, user_properties and a summary row.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

from pytest_speedrun import __version__
from pytest_speedrun.agents.base import Agent, AgentContext, AgentResources, NodeResult
from pytest_speedrun.agents.command import CommandAgent
from pytest_speedrun.data.dataset import Dataset
from pytest_speedrun.data.guard import DataGuard, full_sha256
from pytest_speedrun.errors import AgentError, MetricsError, SpeedrunError
from pytest_speedrun.execution import runner
from pytest_speedrun.execution.answers import task_answer_holders
from pytest_speedrun.execution.resources import Lease, no_lease
from pytest_speedrun.execution.runtime import RuntimeChoice
from pytest_speedrun.execution.sandbox import Sandbox
from pytest_speedrun.files import write_atomic
from pytest_speedrun.judging import checks, integrity, metrics, steps_contract, timeline
from pytest_speedrun.judging.integrity import Verdict
from pytest_speedrun.judging.static_rules import target_text
from pytest_speedrun.judging.status import AGENT_ERROR, INVALID, STEPS
from pytest_speedrun.pipeline import replay
from pytest_speedrun.pipeline.replay import RunMemo, save_outcome
from pytest_speedrun.pipeline.workspace import copy_companions, copy_python_files
from pytest_speedrun.results import noise, record, store
from pytest_speedrun.results.record import ItemResult
from pytest_speedrun.results.scoring import Reference, Score, exact_interval, score_task
from pytest_speedrun.tasks.hints import hint_text, regime_label
from pytest_speedrun.tasks.manifest import Task

SCRIPT_NAME = "train_gpt2.py"  # the name the real records use; agents see this file in their workspace


@dataclass(frozen=True)
class Execution:
    """One script run under the harness, judged."""

    outcome: runner.RunOutcome
    metrics: metrics.Metrics | None
    verdict: Verdict
    timeline: timeline.Timeline | None = None  # the harness's own clock of the run (None: no timeline file)
    cpu: dict[str, float] = field(default_factory=dict)  # the pump's accounting: cpu_s, wait_s, wall_s
    queued_s: float = 0.0  # how long the run waited for its cores/GPUs
    started_at: float = 0.0  # wall-clock start and end of the run as launched here (0: a run restored from a memo)
    ended_at: float = 0.0

    @property
    def contention(self) -> float:
        """The fraction of its wall time the run was ready to compute but waited for a CPU another process held."""
        wall = self.cpu.get("wall_s") or self.outcome.wall_s
        return self.cpu.get("wait_s", 0.0) / wall if wall else 0.0


@dataclass(frozen=True)
class RunSettings:
    """How runs are launched on this machine (shared by items and calibration)."""

    dataset: Dataset
    threads: int | None
    python: str = sys.executable
    timeout_s: float | None = None  # None: the task's launch.timeout_s
    nproc: int | None = None  # None: the task's launch.nproc_per_node
    sandbox: Sandbox = Sandbox("none", True)
    max_memory_bytes: int | None = None
    lease: Callable[[], AbstractContextManager[Lease]] = no_lease  # devices for each run, held only while it runs
    # devices for a command agent's own work: cores, never the host's timing slot (None: `lease`)
    agent_lease: Callable[[], AbstractContextManager[Lease]] | None = None
    timing: tuple[tuple[str, str], ...] = ()  # how runs are timed beyond the machine, for the calibration fingerprint
    compile_cache: Path | None = None  # per-lease TORCHINDUCTOR/TRITON cache root
    session_id: str = ""  # marks every process of the session, for cleanup after a crash or signal
    store: str = ""  # the results store's id (runner.store_id) and the session's controller (runner.process_token):
    owner: str = ""  # a later session ends runs whose owner is dead before it times anything
    progress: Callable[[str], None] | None = None  # live progress lines (step k/N, val_loss, elapsed, ETA)
    launch: Callable[[runner.RunSpec], runner.RunOutcome] = runner.run  # local subprocess, or a Slurm job
    gpus: int | None = None  # GPUs a run asks its launcher for (Slurm); None: the lease's local GPUs
    placement: dict[str, str] | None = None  # where runs execute when not here (Slurm resources), for calibration
    runtime: RuntimeChoice | None = None  # the task's interpreter and compat fixes (execution/runtime.py)


def _progress_reporter(progress: Callable[[str], None] | None, log_path: Path) -> Callable[[float], None] | None:
    if progress is None:
        return None
    return lambda elapsed: progress(metrics.progress_line(log_path, elapsed))


def probes_consulted(task: Task) -> bool:
    """Can the pump's CPU probe of a run of `task` ever be consulted? Only against calibrated references of a
    time-scored task (`noise.judge_machine`: a scored run's probe against the references' when its witness gave
    no time; a calibration or control run's probe becomes the references'). A task scored against the manifest's
    times or by steps has no reference probe, so its runs skip the probes: about 90 ms of CPU and of the item's
    wall time per run (issue 23)."""
    return task.reference == "calibrate" and task.metric != STEPS


def execute_script(script: Path, task: Task, settings: RunSettings, seed: int, log_path: Path) -> Execution:
    """Run `script` (in its own directory) under the env contract and judge the result."""
    timeout = settings.timeout_s or task.launch.timeout_s
    with settings.lease() as lease:
        env = runner.contract_env(
            train_glob=settings.dataset.train_glob, val_glob=settings.dataset.val_glob,
            val_tokens=settings.dataset.val_tokens, task_env=task.launch.env, seed=seed, threads=settings.threads,
        )
        env.update(lease.env(settings.compile_cache))
        if settings.session_id:
            env[runner.SESSION_MARKER] = settings.session_id
        if settings.store:
            env.update({runner.STORE_MARKER: settings.store, runner.OWNER_MARKER: settings.owner})
        env.update(steps_contract.run_env(task, script.parent, env))  # a steps task's shape recorder
        spec = runner.RunSpec(script=script, workdir=script.parent, log_path=log_path, env=env, timeout_s=timeout,
                              nproc=settings.nproc or task.launch.nproc_per_node, python=settings.python,
                              prefix=tuple(settings.sandbox.prefix(
                                  script.parent, (settings.dataset.root, Path(settings.python).parent.parent),
                                  masked=task_answer_holders(task))),
                              max_memory_bytes=settings.max_memory_bytes, cpu_affinity=lease.cores,
                              gpus=len(lease.gpus) if settings.gpus is None else settings.gpus,
                              on_progress=_progress_reporter(settings.progress, log_path),
                              probes=probes_consulted(task))
        started_at = time.time()
        outcome = settings.launch(spec)
        ended_at = time.time()
    steps_contract.collect(task, script.parent, log_path)
    return replace(judge_execution(outcome, script, task, timeout), queued_s=round(lease.waited_s, 3),
                   started_at=started_at, ended_at=ended_at)


def judge_execution(outcome: runner.RunOutcome, script: Path, task: Task, timeout: float) -> Execution:
    """Parse the run's log (`outcome.log_path`) and judge it: the same for a fresh run and a reused one."""
    parsed, error = None, None
    try:
        parsed = metrics.parse_log(outcome.log_path, script)
    except MetricsError as exc:
        error = str(exc)
    return Execution(outcome=outcome, metrics=parsed,
                     verdict=integrity.judge(outcome, parsed, error, task.target_val_loss, timeout),
                     timeline=timeline.of_run(outcome.log_path, runner.timeline_path(outcome.log_path), script),
                     cpu=runner.read_cpu_stats(outcome.log_path))


def _execute_or_reuse(memo: RunMemo, script: Path, task: Task, settings: RunSettings, seed: int,
                      log_path: Path) -> tuple[Execution, str | None]:
    """Run `script`, unless an interrupted attempt of this item already ran exactly these bytes (see replay.py).
    Either way the run's outcome is saved next to its log, for a later resume."""
    source = memo.take(script.read_text(encoding="utf-8"))
    if source is not None:
        outcome = RunMemo.restore(source, log_path)
        ex = judge_execution(outcome, script, task, settings.timeout_s or task.launch.timeout_s)
    else:
        ex = execute_script(script, task, settings, seed, log_path)
    save_outcome(log_path, ex.outcome)
    return ex, None if source is None else str(source)


@dataclass(frozen=True)
class ItemRequest:
    task: Task
    agent: Agent
    regime: tuple[int, ...]
    seed: int
    settings: RunSettings
    reference: Reference
    artifacts_dir: Path
    agent_timeout_s: float = 3600.0
    allow_suspicious: bool = False
    repeats: int = 1  # runs of the final solution; with 2+, validity is a one-sided t-test (p < 0.01)
    start_script: Path | None = None  # cumulative mode: start from this script instead of the human record
    start_source: str = ""  # what the start script is, for reports ("record 5", "tiny01 solution", ...)
    resume_from: Path | None = None  # an interrupted attempt's artifacts: its finished runs and LLM answers
    config_key: str = ""  # the resume key, when the caller computed it already ("": run_item computes it)
    # times the task's witness next to the scored run (calibrate.Calibrator.witness); None: the task gets none
    witness: Callable[[RunSettings, Path, float], noise.Witness] | None = None


def config_key(task: Task, agent: Agent, regime: tuple[int, ...], seed: int, repeats: int = 1,
               start_script: Path | None = None) -> str:
    """What makes two items the same experiment (the resume key): task, suite, agent and its configuration
    (model, scaffold and parameters), hints, seed, repeats, harness version and the hashes of the scripts."""
    scripts = [p for p in (start_script or task.start.script.path, task.target.script.path) if p is not None]
    ident = {
        "task": task.id, "suite": task.suite, "agent": agent.name, "agent_config": getattr(agent, "config", {}),
        "hints": regime_label(regime), "seed": seed, "repeats": repeats, "harness": __version__,
        "scripts": [full_sha256(p) for p in scripts], "target_val_loss": task.target_val_loss,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_workspace(task: Task, regime: tuple[int, ...], artifacts: Path,
                      start_script: Path | None = None) -> tuple[Path, Path, str | None]:
    """A fresh workspace with the start script (as train_gpt2.py) and, with hints, hints.md."""
    workspace = artifacts / "workspace"
    workspace.mkdir(parents=True)
    source = start_script or task.start.script.path
    if source is None:
        raise SpeedrunError(f"task {task.id}: start script {task.start.script.describe()} is not available locally")
    script = workspace / SCRIPT_NAME
    shutil.copyfile(source, script)
    copy_companions(task.id, task.start.script, workspace)  # a several-file record's other files, beside it
    shutil.copyfile(source, artifacts / "start.py")
    hints = hint_text(task, regime)
    if hints is not None:
        (workspace / "hints.md").write_text(hints, encoding="utf-8")
    return workspace, script, hints


class NodeRunner:
    """`ctx.execute`: runs a candidate script as a search node, under the same checks as a final run."""

    def __init__(self, req: ItemRequest, start_text: str, guard: DataGuard, memo: RunMemo) -> None:
        self.req, self.start_text, self.guard, self.memo = req, start_text, guard, memo
        self.target_text = None if getattr(req.agent, "trusted", False) else target_text(req.task)  # near-copy
        self.results: list[NodeResult] = []
        self.executions: list[tuple[Execution, list[str]]] = []  # per node: the run, what the data guard found
        self.best_ms = req.reference.t_start_ms
        self.start_shapes = start_shapes(req)  # a steps task's start record (steps_contract.py); None otherwise

    def __call__(self, script_text: str, parent: int | None = None, note: str = "") -> NodeResult:
        req, task, ref = self.req, self.req.task, self.req.reference
        index = len(self.results)
        node_dir = req.artifacts_dir / "nodes" / f"{index:03d}"
        node_dir.mkdir(parents=True)
        script = node_dir / SCRIPT_NAME
        script.write_text(script_text, encoding="utf-8")
        copy_python_files(req.artifacts_dir / "workspace", node_dir, SCRIPT_NAME)  # what the script may import
        ex, reused_from = _execute_or_reuse(self.memo, script, task, req.settings, req.seed, node_dir / "run.log")
        found = self.guard.changes()
        checked = checks.check(task, ref, [ex], start_text=self.start_text, solution_text=script_text,
                               target_text=self.target_text, scanned_dir=node_dir, regime=req.regime,
                               script_name=SCRIPT_NAME, extra_tampered=found, allow_suspicious=req.allow_suspicious,
                               start_shapes=self.start_shapes, solution_dir=node_dir)
        verdict, m = checked.verdict, ex.metrics
        fsr = None
        if verdict.passed and m is not None:
            fsr = score_task(task.metric, ref, m.train_time_ms, m.steps, task.start.steps, task.target.steps).fsr
        if not verdict.passed:
            kind = "buggy"
        elif m is not None and m.train_time_ms < self.best_ms:
            kind, self.best_ms = "improved", m.train_time_ms
        else:
            kind = "unimproved"
        node = NodeResult(index=index, status=verdict.status, reasons=verdict.reasons,
                          val_loss=m.val_loss if m else None, train_time_ms=m.train_time_ms if m else None,
                          wall_s=round(ex.outcome.wall_s, 3), fsr=fsr, script_path=str(script), parent=parent,
                          note=note, kind=kind, log_excerpt=runner.tail(node_dir / "run.log", 30),
                          slurm_job_id=ex.outcome.job_id, reused_from=reused_from,
                          train_time_observed_ms=ex.timeline.train_time_observed_ms if ex.timeline else None)
        write_atomic(node_dir / "node.json", json.dumps(node.to_json(), indent=2, default=str) + "\n")
        self.results.append(node)
        self.executions.append((ex, found))
        return node


def start_shapes(req: ItemRequest) -> steps_contract.Records | None:
    """A steps task's start record, probed under the recorder (cached beside the results store); None for a
    time task."""
    task, s = req.task, req.settings
    if not steps_contract.applies(task) or task.start.script.path is None:
        return None
    key = steps_contract.launch_key(s.python, s.nproc or task.launch.nproc_per_node, s.dataset.root.name)
    return steps_contract.start_records(
        task, task.start.script.path, req.artifacts_dir.parent.parent / ".steps-start", key,
        lambda script, probe, log: execute_script(script, probe, s, 0, log))


@contextmanager
def _agent_lease(req: ItemRequest) -> Iterator[AgentResources | None]:
    """A process-starting agent (`command:`, the coding-agent presets) may run training itself to try ideas: it
    holds the item's lease while it works, so its trial runs use the item's cores and GPUs, never a neighbour's
    timed run's. That lease holds no timing slot: agents work in parallel with timed runs (docs/timing.md, "The
    timing slot", says what their trial runs may still disturb). Agents that run candidates through `ctx.execute`
    (the LLM scaffolds) lease per run instead, and under Slurm there is no local lease."""
    if not isinstance(req.agent, CommandAgent) or req.settings.gpus is not None:
        yield None
        return
    ds = req.settings.dataset
    with (req.settings.agent_lease or req.settings.lease)() as lease:
        env = runner.contract_env(train_glob=ds.train_glob, val_glob=ds.val_glob, val_tokens=ds.val_tokens,
                                  task_env=req.task.launch.env, seed=req.seed, threads=req.settings.threads, base={})
        yield AgentResources(env={**env, **lease.env(req.settings.compile_cache)}, cores=lease.cores)


def runtime_fields(choice: RuntimeChoice | None) -> dict:
    """The record's runtime fields: the interpreter every run used, its torch and the compat fixes."""
    if choice is None:
        return {}
    return {"runtime": choice.runtime, "runtime_kind": choice.kind, "python": choice.python, "torch": choice.torch,
            "compat": tuple(choice.compat)}


@contextmanager
def _held(settings: RunSettings) -> Iterator[tuple[RunSettings, float]]:
    """One lease (cores and timing slot) for an item's final runs and their witness: settings whose runs take it
    without waiting again, and how long taking it waited."""
    with settings.lease() as lease:
        held = replace(lease, waited_s=0.0)
        yield replace(settings, lease=lambda: nullcontext(held)), round(lease.waited_s, 3)


def _run_seed(seed: int, repeat: int) -> int:
    return seed if repeat == 0 else seed + 1_000_003 * repeat


def run_item(req: ItemRequest) -> ItemResult:
    """Run one item. Every outcome, agent failures included, comes back as an ItemResult (and is recorded)."""
    art = req.artifacts_dir
    task = req.task
    agent_config = getattr(req.agent, "config", {}) or {}
    base = dict(task=task.id, suite=task.suite, agent=req.agent.name, hints=regime_label(req.regime), seed=req.seed,
                target_val_loss=task.target_val_loss, t_start_ms=req.reference.t_start_ms,
                t_target_ms=req.reference.t_target_ms, reference_source=req.reference.source,
                artifact_dir=str(art), started=record.now(),
                config_key=req.config_key or config_key(task, req.agent, req.regime, req.seed, req.repeats,
                                                        req.start_script),
                model=str(agent_config.get("model", "")), scaffold=str(agent_config.get("scaffold", "")),
                start_source=req.start_source or f"record {task.start.record}", repeats=req.repeats)
    if req.resume_from is not None:
        base["resumed_from"] = str(req.resume_from)
    base.update(runtime_fields(req.settings.runtime))
    replay.mark_started(art, base["config_key"], req.settings.session_id)
    workspace, script, hints = prepare_workspace(task, req.regime, art, req.start_script)
    start_text = script.read_text(encoding="utf-8")
    guard = DataGuard(req.settings.dataset.root)  # before the agent: it may touch the data too
    memo = RunMemo(req.resume_from)
    nodes = NodeRunner(req, start_text, guard, memo)
    ctx = AgentContext(task=task, workspace=workspace, script_path=script, hints=hints, hint_levels=req.regime,
                       seed=req.seed, artifacts_dir=art, timeout_s=req.agent_timeout_s, execute=nodes,
                       resume_from=req.resume_from, sandbox=req.settings.sandbox)
    try:
        with _agent_lease(req) as resources:
            solution = req.agent.solve(replace(ctx, resources=resources))
    except AgentError as exc:
        return record.write(art, ItemResult(**base, status=AGENT_ERROR, reasons=(str(exc),), finished=record.now(),
                                       nodes=tuple(n.to_json() for n in nodes.results), usage=exc.usage))
    except Exception as exc:  # an agent plugin's bug is that agent's failure, not the harness's
        reason = f"agent {req.agent.name} raised {type(exc).__name__}: {exc}"
        return record.write(art, ItemResult(**base, status=AGENT_ERROR, reasons=(reason,), finished=record.now(),
                                       nodes=tuple(n.to_json() for n in nodes.results)))
    if solution.transcript is not None and not (art / "agent.log").exists():
        write_atomic(art / "agent.log", solution.transcript)
    script.write_text(solution.script, encoding="utf-8")
    write_atomic(art / "solution.py", solution.script)
    store.write_diff(art / "solution.diff", start_text, solution.script)

    runs: list[Execution] = []
    found: list[str] = []  # what was found while the runs ran: the data guard, a reused node's reasons
    reuse = solution.node is not None and req.repeats <= 1 and 0 <= solution.node < len(nodes.executions)
    if reuse:  # the best search node already ran this script under the same checks: its run is the score
        ex, node_tampered = nodes.executions[solution.node]
        recent = ex.ended_at and time.time() - ex.ended_at <= noise.witness_window_s()
        if Path(nodes.results[solution.node].script_path).read_text(encoding="utf-8") == solution.script and (
                req.witness is None or recent):  # a witness must be timed next to it: else the solution runs again
            runs.append(ex)
            found += node_tampered
    witness = None
    busy = not runs or req.witness is not None  # a final run or a witness to time: hold one lease for them
    with _held(req.settings) if busy else nullcontext((req.settings, 0.0)) as (settings, waited):
        for r in range(0 if runs else max(1, req.repeats)):
            log = art / ("run.log" if r == 0 else f"run-{r}.log")
            if r == 0:
                runs.append(_execute_or_reuse(memo, script, task, settings, req.seed, log)[0])
            else:
                runs.append(execute_script(script, task, settings, _run_seed(req.seed, r), log))
            found += guard.changes()
            if not runs[-1].verdict.passed and runs[-1].verdict.status != INVALID:
                break  # a crash, timeout or missing result decides the item; more runs would not change it
        # the witness: the start record right after the scored run(s), in the same lease, so no other timed
        # run comes between them (a run restored from an interrupted attempt has no time to sit next to)
        if req.witness is not None and all(ex.verdict.passed and ex.started_at for ex in runs):
            witness = req.witness(settings, art, runs[0].started_at)
            found += guard.changes()
    if waited and runs:  # the held lease's wait, once
        runs[0] = replace(runs[0], queued_s=round(runs[0].queued_s + waited, 3))
    # The oracle necessarily hands over the target script; every other agent is untrusted.
    checked = checks.check(task, req.reference, runs, start_text=start_text, solution_text=solution.script,
                           target_text=nodes.target_text,
                           scanned_dir=None if getattr(req.agent, "trusted", False) else workspace,
                           regime=req.regime, script_name=SCRIPT_NAME, extra_tampered=found,
                           allow_suspicious=req.allow_suspicious, start_shapes=nodes.start_shapes,
                           solution_dir=workspace)
    result = _result(req, base, runs, checked, solution.usage, witness)
    return record.write(art, replace(result, nodes=tuple(n.to_json() for n in nodes.results)))


def _result(req: ItemRequest, base: dict, runs: list[Execution], checked: checks.Checked,
            usage: dict, witness: noise.Witness | None = None) -> ItemResult:
    """The item's record from its runs and their verdict: the time is the mean train_time over the runs, with
    its FSR interval (noise.py). A steps task is scored by its mean steps, exactly: no interval from the machine's
    noise, and no noise note or disturbance.

    A witness run (docs/timing.md, "Witness") rescales both references by its ratio to the start reference, so
    the score compares the scored run with the machine as it ran next to it; a witness that disagrees with its
    reference beyond their spread flags the item, and its interval also covers the score against the references
    as measured. A witness reused from the calibration is the references' own run: nothing is rescaled."""
    task, ref = req.task, req.reference
    done = [ex for ex in runs if ex.metrics is not None]
    first, m = runs[0], runs[0].metrics
    verdict, losses, times, mean_time, p_value = (checked.verdict, checked.losses, checked.times,
                                                  checked.mean_time_ms, checked.p_value)
    timed = witness is not None and not witness.reused and not witness.failed  # a witness run of its own
    scored = replace(ref, t_start_ms=witness.ms, t_target_ms=ref.t_target_ms * witness.ratio) if timed else ref
    sc: Score | None = None
    mean_steps = statistics.fmean(ex.metrics.steps for ex in done) if done else None
    if mean_time is not None and verdict.passed:  # a speedup only counts for a valid result
        try:
            sc = score_task(task.metric, scored, mean_time, mean_steps, task.start.steps, task.target.steps)
        except ValueError:
            sc = None
    exact = exact_interval(sc) if sc is not None else None
    by_steps = steps_contract.applies(task)  # the record's reference figures are the records' steps
    observed = [ex.timeline.train_time_observed_ms for ex in done
                if ex.timeline is not None and ex.timeline.train_time_observed_ms is not None]
    check = noise.witness_check(witness, ref.spread) if timed else None
    disturbed, slowdown, faster = noise.judge_machine([(ex.contention, ex.cpu) for ex in done], ref.probe_s,
                                                      witness, check)
    interval, note = None, ""
    if exact is not None:  # steps: the machine's noise does not move the score
        disturbed = ""
    elif sc is not None and mean_time is not None:
        interval = noise.fsr_interval(sc.fsr, mean_time, len(times), scored.t_start_ms, ref.n_start,
                                      scored.t_target_ms, ref.n_target, ref.spread, slowdown, faster,
                                      witness_runs=int(timed))
        if check is not None and check.moved:  # cover the score against the references as measured too
            plain = (ref.t_start_ms - mean_time) / (ref.t_start_ms - ref.t_target_ms)
            other = noise.fsr_interval(plain, mean_time, len(times), ref.t_start_ms, ref.n_start, ref.t_target_ms,
                                       ref.n_target, ref.spread)
            interval = noise.Interval(min(interval.low, other.low), max(interval.high, other.high))
        name = f"{task.id}[h{base['hints']}-s{base['seed']}]"
        note = noise.advice(name, interval, sc.fsr, mean_time, scored.t_start_ms, scored.t_target_ms, ref.spread)
        if disturbed:
            note = f"{name}: the machine was too noisy for a firm score ({disturbed}); its interval allows for it"
    scored_end = max((ex.ended_at for ex in runs), default=0.0)
    gap = witness.gap_s(runs[0].started_at, scored_end) if witness is not None else None
    if timed:
        base = {**base, "t_start_ms": scored.t_start_ms, "t_target_ms": scored.t_target_ms}
    return ItemResult(
        **base, status=verdict.status, reasons=verdict.reasons, log_path=str(first.outcome.log_path),
        val_loss=statistics.fmean(losses) if losses else None, train_time_ms=mean_time,
        train_time_std_ms=statistics.stdev(times) if len(times) > 1 else None,
        step=m.step if m else None, steps=m.steps if m else None,
        wall_s=round(sum(ex.outcome.wall_s for ex in runs), 3), speedup=sc.speedup if sc else None,
        fsr=sc.fsr if sc else None, fsr_low=exact[0] if exact else interval.low if interval else None,
        fsr_high=exact[1] if exact else interval.high if interval else None,
        noise="" if by_steps else ref.spread.describe(), reference_state="" if by_steps else ref.state,
        metric=task.metric, s_start=task.start.steps if by_steps else None,
        s_target=task.target.steps if by_steps else None,
        train_time_observed_ms=statistics.fmean(observed) if observed else None,
        train_times_observed_ms=tuple(observed) if len(runs) > 1 else (), disturbed=disturbed,
        queued_s=round(sum(ex.queued_s for ex in runs), 3), note=note, val_losses=losses if len(runs) > 1 else (),
        train_times_ms=times if len(runs) > 1 else (), p_value=p_value, usage=dict(usage), finished=record.now(),
        slurm_job_id=first.outcome.job_id, slurm_node=first.outcome.node, slurm_reattached=first.outcome.reattached,
        **_witness_fields(witness, gap),
    )


def _witness_fields(witness: noise.Witness | None, gap: float | None) -> dict:
    """The record's witness fields (empty without a witness, or when its run failed)."""
    if witness is None or witness.failed:
        return {}
    return {"witness_ms": witness.ms, "witness_ratio": witness.ratio, "witness_reused": witness.reused,
            "witness_gap_s": None if gap is None else round(gap, 3), "witness_log": witness.log_path}


def agent_error_result(task: Task, agent: Agent, regime: tuple[int, ...], seed: int, reason: str, art: Path,
                       key: str = "", start_source: str = "") -> ItemResult:
    """Record an item whose agent failed before any work started (its preflight check)."""
    agent_config = getattr(agent, "config", {}) or {}
    result = ItemResult(
        task=task.id, suite=task.suite, agent=agent.name, hints=regime_label(regime), seed=seed,
        status=AGENT_ERROR, reasons=(reason,), target_val_loss=task.target_val_loss,
        t_start_ms=task.start.train_time_ms, t_target_ms=task.target.train_time_ms, reference_source="manifest",
        artifact_dir=str(art), config_key=key, model=str(agent_config.get("model", "")),
        scaffold=str(agent_config.get("scaffold", "")), start_source=start_source or f"record {task.start.record}",
        started=record.now(), finished=record.now(),
    )
    return record.write(art, result)
