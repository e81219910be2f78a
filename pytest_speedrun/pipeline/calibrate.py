"""Measure reference times (t_i, t_{i+1}) on this machine, cached by a hardware/software fingerprint.

CPU speed varies between machines, so the tiny suite's reference times cannot be constants. The harness runs
the start and target record scripts here, under exactly the settings items use, and caches the median
train_time per (fingerprint, script hash, dataset, launch settings). Each entry is its own JSON file guarded by
its own lock, so xdist workers measuring different records proceed in parallel and never measure one twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from importlib import metadata
from pathlib import Path

from filelock import FileLock

from pytest_speedrun.data.guard import full_sha256
from pytest_speedrun.errors import CalibrationError
from pytest_speedrun.execution.resources import GPU_THREADS
from pytest_speedrun.files import write_atomic
from pytest_speedrun.judging.status import STEPS
from pytest_speedrun.pipeline.item import SCRIPT_NAME, Execution, RunSettings, execute_script
from pytest_speedrun.pipeline.workspace import copy_companions
from pytest_speedrun.results import noise
from pytest_speedrun.results.noise import (
    ASSUMED_CV,
    CONTROL_RUNS,
    Spread,
    Witness,
    pooled_spread,
    shift_check,
)
from pytest_speedrun.results.scoring import Reference
from pytest_speedrun.tasks.manifest import ScriptRef, Task


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def fingerprint(threads: int | None, nproc: int, python: str = sys.executable,
                placement: dict[str, str] | None = None, torch: str | None = None,
                timing: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """What reference times depend on. torch's version comes from package metadata: no torch import here;
    `torch`: the version in the runs' interpreter where it is not this one (execution/runtime.py).

    `timing`: how runs are timed beyond the machine (RunSettings.timing): a timing slot wider than one timed
    run at once, CPU runs on a host that has GPUs. Absent in the default case, so existing entries stay valid.

    `placement`: where runs execute when not on this machine (the Slurm resources asked for: partition,
    constraints, GPUs, setup lines). It replaces this machine's hardware in the fingerprint, so times measured
    on one kind of job are used for the same kind of job, not for whatever login node submitted them."""
    if placement is not None:
        return {"placement": json.dumps(placement, sort_keys=True), "torch": torch or _dist_version("torch"),
                "python": python if python != sys.executable else platform.python_version(),
                "threads": str(threads), "nproc": str(nproc), **dict(timing)}
    fp = {
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "system": platform.system(),
        "python": python if python != sys.executable else platform.python_version(),
        "torch": torch or _dist_version("torch"),
        "threads": str(threads),
        "nproc": str(nproc),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "gpus": gpu_inventory(),
    }
    if fp["gpus"]:  # a GPU run's threads per process are the lease's (resources.GPU_THREADS), not `threads`
        fp["gpu_threads"] = str(GPU_THREADS)
    return {**fp, **dict(timing)}


def gpu_inventory(nvidia_smi: str = "nvidia-smi") -> str:
    """GPU models, count and driver as nvidia-smi reports them ("" without GPUs): part of the fingerprint,
    so times measured on one kind of node are never used on another."""
    exe = shutil.which(nvidia_smi)
    if exe is None:
        return ""
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return "; ".join(sorted(line.strip() for line in out.splitlines() if line.strip()))


def fingerprint_id(fp: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]


RETRY_RUNS = 3  # runs per record when a first measurement found the next record not faster
MAX_RUNS_KEPT = 30  # runs an entry accumulates across sessions (the most recent)
RETRIES_DISTURBED = 1  # another attempt of a calibration run that something else on the machine disturbed


def disturbance(ex: Execution) -> str:
    return noise.disturbance(ex.contention, ex.cpu)


def _earlier_runs(entry_path: Path, fid: str) -> list[float]:
    """The runs an entry about to be replaced holds, and those it carried (the MAX_RUNS_KEPT most recent)."""
    try:
        old = json.loads(entry_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if old.get("fingerprint_id") != fid:
        return []
    runs = list(old.get("earlier_ms", [])) + list(old.get("train_times_ms", []))
    return [float(t) for t in runs if isinstance(t, (int, float))][-MAX_RUNS_KEPT:]


def geometric_mean(times: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(t) for t in times))


@dataclass(frozen=True)
class Calibrator:
    """Reference times on this machine. Within a session (`settings.session_id`), the first use of a cached
    fingerprint runs a control check: `noise.CONTROL_RUNS` runs of `control` (the suite's cheapest record)
    compared with its cached runs. If they agree, the control runs join the cache and every cached reference
    of the fingerprint counts as re-checked; if not, the machine moved and every reference is measured again."""

    cache_dir: Path
    settings: RunSettings
    runs: int = 1
    force_before: float | None = None  # re-measure entries measured before this time (--speedrun-calibrate)
    control: Task | None = None  # its target record is the control script of the session check
    session_started: float | None = None
    recheck_after_s: float = 0.0  # a check by any session on this machine holds this long (0: every session)

    def _paths(self, task: Task, ref: ScriptRef) -> tuple[Path, Path, dict, str]:
        if ref.path is None:
            raise CalibrationError(f"task {task.id}: cannot calibrate {ref.describe()}: script not available locally")
        nproc = self.settings.nproc or task.launch.nproc_per_node
        runtime = self.settings.runtime
        fp = fingerprint(self.settings.threads, nproc, self.settings.python, self.settings.placement,
                         runtime.torch if runtime is not None else None, self.settings.timing)
        fid = fingerprint_id(fp)
        key_src = json.dumps({"fp": fid, "script": full_sha256(ref.path), "data": self.settings.dataset.root.name,
                              "val_tokens": self.settings.dataset.val_tokens, "env": task.launch.env,
                              "target": task.target_val_loss}, sort_keys=True)
        key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
        root = self.cache_dir / "calibration"
        root.mkdir(parents=True, exist_ok=True)
        return root, root / f"{key}.json", fp, fid

    def measure(self, task: Task, ref: ScriptRef, lookup_only: bool = False, runs: int | None = None,
                ) -> tuple[dict | None, str]:
        """The calibration entry of `ref` on this machine (mean train_time_ms, its runs, steps, untimed_s) and the
        fingerprint id; cached. With `lookup_only`, never run: None when nothing is cached."""
        root, entry_path, fp, fid = self._paths(task, ref)
        if lookup_only:
            return self._load(entry_path, runs), fid
        with FileLock(str(entry_path.with_suffix(".lock"))):
            entry = self._load(entry_path, runs)
            if entry is None:
                earlier = _earlier_runs(entry_path, fid)
                entry = self._run(task, ref, entry_path.with_suffix(""), fp, fid, runs or self.runs)
                if earlier:
                    entry["earlier_ms"] = earlier
                write_atomic(entry_path, json.dumps(entry, indent=2, sort_keys=True) + "\n")
        return entry, fid

    def _load(self, path: Path, runs: int | None = None) -> dict | None:
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if self.force_before is not None and entry.get("measured_at", 0) < self.force_before:
            return None
        if len(entry.get("train_times_ms", [])) < (runs or self.runs) or "untimed_s" not in entry:
            return None
        if "pre_step_s" in entry and not {"pre_step_cpu_s", "val_pause_s"} <= entry.keys():
            return None  # measured before the timeline rules read CPU time and validation pauses
        return entry

    def _one(self, task: Task, script: Path, log: Path, seed: int, name: str) -> tuple[Execution, str]:
        """One calibration run, run again (up to RETRIES_DISTURBED times) while the machine disturbed it."""
        for _ in range(RETRIES_DISTURBED + 1):
            log.unlink(missing_ok=True)  # a retried run's log replaces the disturbed one's
            ex = execute_script(script, task, self.settings, seed=seed, log_path=log)
            if not ex.verdict.passed or ex.metrics is None:
                raise CalibrationError(
                    f"calibrating {name} for {task.id} failed: {ex.verdict.status} "
                    f"({'; '.join(ex.verdict.reasons)}); log: {log}")
            why = disturbance(ex)
            if not why:
                return ex, ""
        return ex, why

    def _run(self, task: Task, ref: ScriptRef, work: Path, fp: dict, fid: str, runs: int) -> dict:
        assert ref.path is not None
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        script = work / SCRIPT_NAME
        shutil.copyfile(ref.path, script)
        copy_companions(task.id, ref, work)  # a several-file record runs with its companions beside it
        times, losses, untimed, disturbed, clock, probes = [], [], [], [], [], []
        for i in range(runs):
            ex, why = self._one(task, script, work / f"run{i}.log", seed=i, name=ref.path.name)
            assert ex.metrics is not None
            times.append(ex.metrics.train_time_ms)
            losses.append(ex.metrics.val_loss)
            untimed.append(ex.outcome.wall_s - ex.metrics.train_time_ms / 1000.0)
            if why:
                disturbed.append(why)
            if ex.timeline is not None:
                clock.append(ex.timeline)
            if ex.cpu.get("probe_s"):
                probes.append(ex.cpu["probe_s"])
        observed = {"untimed_steps": max(t.warmup_steps + t.unclocked_steps for t in clock),
                    "pre_step_s": statistics.median(t.first_step_s for t in clock if t.first_step_s is not None)
                    } if clock and all(t.first_step_s is not None for t in clock) else {}
        if observed:
            # seconds per validation pause (None: the record pauses for none)
            observed["val_pause_s"] = (statistics.median(t.val_pause_ms / 1000.0 / t.val_pauses for t in clock)
                                       if all(t.val_pauses for t in clock) else None)
            # None where the pump could not read CPU times (no /proc)
            observed["pre_step_cpu_s"] = (statistics.median(t.first_step_cpu_s for t in clock)
                                          if all(t.first_step_cpu_s is not None for t in clock) else None)
        return {**observed, "probes_s": probes, "train_time_ms": geometric_mean(times), "train_times_ms": times,
                "val_losses": losses,
                "steps": ex.metrics.steps, "untimed_s": statistics.median(untimed), "disturbed": disturbed,
                "script": str(ref.path), "fingerprint": fp, "fingerprint_id": fid, "measured_at": time.time(),
                "last_run_at": time.time()}

    def spread(self, fid: str, over_time: bool = True) -> Spread:
        """The run-to-run spread pooled over every current entry of this fingerprint (assumed if none has 2+ runs).

        `over_time`: each entry's group also holds the runs of the measurements it replaced (`earlier_ms`), so the
        spread includes how far this machine's speed moved between sessions, not only between back-to-back runs.
        That is the spread a score needs: its runs come minutes or days after the references. (A CI session here
        re-measured record 4 at 33.6 s and then ran it for the baseline in 24.9 s, while its three back-to-back
        control runs agreed within 2.8%.) The session check compares back-to-back runs, so it uses
        `over_time=False`: its false-alarm and miss rates were measured that way (benchmarks/stale_check.py)."""
        groups = []
        for path in (self.cache_dir / "calibration").glob("*.json"):
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if entry.get("fingerprint_id") == fid and entry.get("measured_at", 0) >= (self.force_before or 0):
                groups.append(entry.get("train_times_ms", []) + (entry.get("earlier_ms", []) if over_time else []))
        return pooled_spread(groups) or Spread(ASSUMED_CV, None)

    def session_check(self) -> dict:
        """Once per session and fingerprint: the control check (see the class). Returns {"state": "fresh" |
        "re-checked" | "re-measured", "at": when, "check": what it found}; {} without a control or session."""
        if self.control is None or not self.settings.session_id or self.control.target.script.path is None:
            return {}
        task, ref = self.control, self.control.target.script
        root, entry_path, fp, fid = self._paths(task, ref)
        marker = root / f"check-{fid}.json"
        with FileLock(str(root / f"check-{fid}.lock")):
            try:
                last = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                last = {}
            at = time.time()
            if last.get("session") == self.settings.session_id:
                return last
            if last and at - float(last.get("at", 0)) < self.recheck_after_s and self._load(entry_path, 1):
                # A recent check by another session still shows the machine as it is (runs disturbed since are
                # caught one by one by the pump's accounting).
                return {**last, "state": "re-checked", "check": f"checked {at - last['at']:.0f} s ago by session "
                        f"{last.get('session')}: {last.get('check', '')}"}
            cached = self._load(entry_path, 1)
            if cached is None:  # nothing to check: everything is measured now, the control CONTROL_RUNS times
                self.measure(task, ref, runs=max(CONTROL_RUNS, self.runs))
                result = {"state": "fresh", "at": at, "check": "nothing cached", "session": self.settings.session_id}
            else:
                spread = self.spread(fid, over_time=False)
                fresh = self._run(task, ref, entry_path.with_suffix(""), fp, fid, CONTROL_RUNS)
                check = shift_check(fresh["train_times_ms"], cached["train_times_ms"], spread)
                if check.moved:  # the new runs are the control's entry now; every older entry is stale
                    entry = {**fresh, "earlier_ms": _earlier_runs(entry_path, fid)}
                else:
                    times = (cached["train_times_ms"] + fresh["train_times_ms"])[-MAX_RUNS_KEPT:]
                    entry = {**cached, "train_times_ms": times, "train_time_ms": geometric_mean(times),
                             "probes_s": (cached.get("probes_s", []) + fresh["probes_s"])[-MAX_RUNS_KEPT:],
                             "val_losses": (cached.get("val_losses", []) + fresh["val_losses"])[-MAX_RUNS_KEPT:],
                             "checked_at": at, "last_run_at": fresh["last_run_at"]}
                write_atomic(entry_path, json.dumps(entry, indent=2, sort_keys=True) + "\n")
                result = {"state": "re-measured" if check.moved else "re-checked", "at": at,
                          "check": check.describe(), "spread": spread.describe(), "session": self.settings.session_id}
                if check.moved:  # entries measured before this check are stale, for this and later sessions
                    result["stale_before"] = at
            write_atomic(marker, json.dumps(result, sort_keys=True) + "\n")
        return result

    def reference(self, task: Task) -> Reference:
        """t_i and t_{i+1} for `task`, with their runs and the machine's spread. Tasks with `reference.source =
        "calibrate"` (the tiny suite) are measured here when not cached, after the session's control check.
        Others (the paper's times) use calibrated times when this machine's fingerprint has them
        (`pytest-speedrun calibrate`, or `--speedrun-calibrate` to measure now), else the manifest's, with an
        assumed spread."""
        measure_now = task.reference == "calibrate" or self.force_before is not None
        check = self.session_check() if measure_now else {}
        if "stale_before" in check:
            self = replace(self, force_before=max(self.force_before or 0.0, check["stale_before"]))
        start, fid = self.measure(task, task.start.script, lookup_only=not measure_now)
        target, _ = self.measure(task, task.target.script, lookup_only=not measure_now)
        if start is None or target is None:
            return Reference(task.start.train_time_ms, task.target.train_time_ms, "manifest",
                             start_steps=task.start.steps, spread=Spread(ASSUMED_CV, None), state="manifest")
        t_start, t_target = float(start["train_time_ms"]), float(target["train_time_ms"])
        if t_target >= t_start and measure_now and self.runs < RETRY_RUNS:
            # Almost always a hiccup of a busy machine on a single run: measure both again, RETRY_RUNS runs each,
            # before calling the task unscorable here.
            return replace(self, runs=RETRY_RUNS, force_before=time.time()).reference(task)
        if t_target >= t_start:
            raise CalibrationError(
                f"task {task.id}: on this machine the target record took {t_target:.0f} ms, not less than the start "
                f"record's {t_start:.0f} ms, so FSR is undefined; re-measure with --speedrun-calibrate")
        started = self.session_started or 0.0
        measured_now = max(start["measured_at"], target["measured_at"]) >= started > 0
        state = check.get("state", "fresh" if measured_now else "cached")
        if state == "re-checked" and measured_now:
            state = "fresh"
        disturbed = tuple(start.get("disturbed", [])) + tuple(target.get("disturbed", []))
        return Reference(t_start, t_target, f"calibrated:{fid}", start_steps=start["steps"],
                         start_untimed_s=start["untimed_s"], n_start=len(start["train_times_ms"]),
                         n_target=len(target["train_times_ms"]), spread=self.spread(fid), state=state,
                         disturbed=disturbed, start_untimed_steps=start.get("untimed_steps"),
                         start_pre_step_s=start.get("pre_step_s"), start_pre_step_cpu_s=start.get("pre_step_cpu_s"),
                         start_val_pause_s=start.get("val_pause_s"),
                         probe_s=statistics.median(probes) if (probes := start.get("probes_s", [])
                                                               + target.get("probes_s", [])) else None)

    def witness_timer(self, task: Task, ref: Reference) -> Callable[[RunSettings, Path, float], Witness] | None:
        """What times `task`'s witness (`witness`), or None where a task gets none: references from the manifest
        (the paper's times say where they come from), a task scored by steps (no machine noise), a reference that
        fell back to the manifest."""
        if (task.reference != "calibrate" or task.metric == STEPS or not ref.source.startswith("calibrated:")
                or task.start.script.path is None):
            return None
        return partial(self.witness, task, ref)

    def witness(self, task: Task, ref: Reference, settings: RunSettings, art: Path, scored_started_at: float,
                ) -> Witness:
        """The start record timed once now, under `settings` (the item's: the same lease and timing slot as its
        final runs when the caller holds them), its log in `art`/witness. When the start record's own calibration
        or control runs ended within WITNESS_WINDOW_S before the scored run started, the last of them is the
        witness and nothing runs."""
        _, entry_path, _, fid = self._paths(task, task.start.script)
        try:
            entry = json.loads(entry_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entry = {}
        last_at = float(entry.get("last_run_at", entry.get("measured_at", 0)))
        same = (entry.get("fingerprint_id") == fid and entry.get("train_times_ms")
                and math.isclose(float(entry.get("train_time_ms", 0)), ref.t_start_ms))
        if same and 0 <= scored_started_at - last_at <= noise.witness_window_s():
            return Witness(ms=float(entry["train_times_ms"][-1]), reference_ms=ref.t_start_ms,
                           n_reference=ref.n_start, record=task.start.record, reused=True, ended_at=last_at,
                           log_path=str(entry_path.with_suffix("")))
        assert task.start.script.path is not None
        work = art / "witness"
        work.mkdir(parents=True, exist_ok=True)
        script = work / SCRIPT_NAME
        shutil.copyfile(task.start.script.path, script)
        copy_companions(task.id, task.start.script, work)
        ex = execute_script(script, task, settings, seed=0, log_path=work / "run.log")
        base = dict(reference_ms=ref.t_start_ms, n_reference=ref.n_start, record=task.start.record,
                    started_at=ex.started_at, ended_at=ex.ended_at, log_path=str(work / "run.log"))
        if not ex.verdict.passed or ex.metrics is None:
            why = f"{ex.verdict.status} ({'; '.join(ex.verdict.reasons)})"
            return Witness(ms=ref.t_start_ms, **base, failed=why)
        return Witness(ms=ex.metrics.train_time_ms, **base)
