"""Measure reference times (t_i, t_{i+1}) on this machine, cached by a hardware/software fingerprint.

CPU speed varies between machines, so the tiny suite's reference times cannot be constants. The harness runs
the start and target record scripts here, under exactly the settings items use, and caches the median
train_time per (fingerprint, script hash, dataset, launch settings). Each entry is its own JSON file guarded by
its own lock, so xdist workers measuring different records proceed in parallel and never measure one twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from filelock import FileLock

from .dataguard import full_sha256
from .errors import CalibrationError
from .harness import SCRIPT_NAME, RunSettings, execute_script
from .results import write_atomic
from .scoring import Reference
from .tasks import ScriptRef, Task


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
                placement: dict[str, str] | None = None) -> dict[str, str]:
    """What reference times depend on. torch's version comes from package metadata: no torch import here.

    `placement`: where runs execute when not on this machine (the Slurm resources asked for: partition,
    constraints, GPUs, setup lines). It replaces this machine's hardware in the fingerprint, so times measured
    on one kind of job are used for the same kind of job, not for whatever login node submitted them."""
    if placement is not None:
        return {"placement": json.dumps(placement, sort_keys=True), "torch": _dist_version("torch"),
                "python": python if python != sys.executable else platform.python_version(),
                "threads": str(threads), "nproc": str(nproc)}
    return {
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "system": platform.system(),
        "python": python if python != sys.executable else platform.python_version(),
        "torch": _dist_version("torch"),
        "threads": str(threads),
        "nproc": str(nproc),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "gpus": gpu_inventory(),
    }


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


@dataclass(frozen=True)
class Calibrator:
    cache_dir: Path
    settings: RunSettings
    runs: int = 1
    force_before: float | None = None  # re-measure entries measured before this time (--speedrun-calibrate)

    def measure(self, task: Task, ref: ScriptRef, lookup_only: bool = False) -> tuple[dict | None, str]:
        """The calibration entry of `ref` on this machine (median train_time_ms, steps, untimed_s, the raw
        runs) and the fingerprint id; cached. With `lookup_only`, never run: None when nothing is cached."""
        if ref.path is None:
            raise CalibrationError(f"task {task.id}: cannot calibrate {ref.describe()}: script not available locally")
        nproc = self.settings.nproc or task.launch.nproc_per_node
        fp = fingerprint(self.settings.threads, nproc, self.settings.python, self.settings.placement)
        fid = fingerprint_id(fp)
        key_src = json.dumps({"fp": fid, "script": full_sha256(ref.path), "data": self.settings.dataset.root.name,
                              "val_tokens": self.settings.dataset.val_tokens, "env": task.launch.env,
                              "target": task.target_val_loss}, sort_keys=True)
        key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
        root = self.cache_dir / "calibration"
        root.mkdir(parents=True, exist_ok=True)
        entry_path = root / f"{key}.json"
        if lookup_only:
            return self._load(entry_path), fid
        with FileLock(str(root / f"{key}.lock")):
            entry = self._load(entry_path)
            if entry is None:
                entry = self._run(task, ref, root / key, fp, fid)
                write_atomic(entry_path, json.dumps(entry, indent=2, sort_keys=True) + "\n")
        return entry, fid

    def _load(self, path: Path) -> dict | None:
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if self.force_before is not None and entry.get("measured_at", 0) < self.force_before:
            return None
        if len(entry.get("train_times_ms", [])) < self.runs or "untimed_s" not in entry:
            return None
        return entry

    def _run(self, task: Task, ref: ScriptRef, work: Path, fp: dict, fid: str) -> dict:
        assert ref.path is not None
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        script = work / SCRIPT_NAME
        shutil.copyfile(ref.path, script)
        times, losses, untimed = [], [], []
        for i in range(self.runs):
            ex = execute_script(script, task, self.settings, seed=i, log_path=work / f"run{i}.log")
            if not ex.verdict.passed or ex.metrics is None:
                raise CalibrationError(
                    f"calibrating {ref.path.name} for {task.id} failed: {ex.verdict.status} "
                    f"({'; '.join(ex.verdict.reasons)}); log: {work / f'run{i}.log'}")
            times.append(ex.metrics.train_time_ms)
            losses.append(ex.metrics.val_loss)
            untimed.append(ex.outcome.wall_s - ex.metrics.train_time_ms / 1000.0)
        return {"train_time_ms": statistics.median(times), "train_times_ms": times, "val_losses": losses,
                "steps": ex.metrics.steps, "untimed_s": statistics.median(untimed),
                "script": str(ref.path), "fingerprint": fp, "fingerprint_id": fid, "measured_at": time.time()}

    def reference(self, task: Task) -> Reference:
        """t_i and t_{i+1} for `task`. Tasks with `reference.source = "calibrate"` (the tiny suite) are measured
        here when not cached. Others (the paper's times) use calibrated times when this machine's fingerprint
        has them (`pytest-speedrun calibrate`, or `--speedrun-calibrate` to measure now), else the manifest's."""
        measure_now = task.reference == "calibrate" or self.force_before is not None
        start, fid = self.measure(task, task.start.script, lookup_only=not measure_now)
        target, _ = self.measure(task, task.target.script, lookup_only=not measure_now)
        if start is None or target is None:
            return Reference(task.start.train_time_ms, task.target.train_time_ms, "manifest",
                             start_steps=task.start.steps)
        t_start, t_target = float(start["train_time_ms"]), float(target["train_time_ms"])
        if t_target >= t_start and measure_now and self.runs < RETRY_RUNS:
            # Almost always a hiccup of a busy machine on a single run: measure both again, RETRY_RUNS runs each
            # (medians), before calling the task unscorable here.
            return replace(self, runs=RETRY_RUNS, force_before=time.time()).reference(task)
        if t_target >= t_start:
            raise CalibrationError(
                f"task {task.id}: on this machine the target record took {t_target:.0f} ms, not less than the start "
                f"record's {t_start:.0f} ms, so FSR is undefined; re-measure with --speedrun-calibrate")
        return Reference(t_start, t_target, f"calibrated:{fid}", start_steps=start["steps"],
                         start_untimed_s=start["untimed_s"])
