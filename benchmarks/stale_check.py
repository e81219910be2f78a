"""The stale-reference check's false-alarm and miss rates, measured on this machine.

    python benchmarks/stale_check.py [--runs 15] [--slow-runs 9] [--duty 0.03]

Runs the control record (the tiny suite's cheapest, record 5) `--runs` times as the harness runs it (pinned to
its core, under the pump), then `--slow-runs` times while a duty-cycled busy process pinned to the same core takes
`--duty` of it (a 3% slowdown). Then it replays the check (calibrate.Calibrator.session_check) on those runs:
every way to draw a cached entry of 3 runs (a cold session's control) and 3 control runs from the unchanged runs
gives a false-alarm rate; cached from unchanged and control from slowed gives the miss rate. The spread is
pooled as the harness pools it (over the cached runs: 2 degrees of freedom, a second session's view, and over
all unchanged runs, a well-calibrated machine's view). Keep the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pytest_speedrun.data.dataset import ensure_tiny_dataset
from pytest_speedrun.execution.resources import LeasePool, run_cores
from pytest_speedrun.pipeline.item import SCRIPT_NAME, RunSettings, execute_script
from pytest_speedrun.results.noise import CONTROL_RUNS, pooled_spread, shift_check
from pytest_speedrun.tasks.manifest import find_suite, load_suite


def _busy(core: int, duty: float, period_s: float = 0.05) -> None:
    os.sched_setaffinity(0, [core])
    while True:
        start = time.perf_counter()
        while time.perf_counter() - start < duty * period_s:
            pass
        time.sleep((1 - duty) * period_s)


def measure(n: int, work: Path, settings: RunSettings, task, label: str) -> list[float]:
    times = []
    for i in range(n):
        d = work / f"{label}{i}"
        d.mkdir()
        script = d / SCRIPT_NAME
        script.write_text(task.target.script.path.read_text())
        ex = execute_script(script, task, settings, 0, d / "run.log")
        assert ex.metrics is not None, ex.verdict
        times.append(ex.metrics.train_time_ms)
        print(f"  {label} {i}: {ex.metrics.train_time_ms:.0f} ms (waited {ex.contention:.1%})", flush=True)
    return times


def rates(base: list[float], slow: list[float], trials: int = 4000, seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    out = {}
    for view in ("cold cache (spread from the 3 cached runs)", "calibrated (spread from all unchanged runs)"):
        alarms = misses = 0
        for _ in range(trials):
            picked = rng.sample(base, 2 * CONTROL_RUNS)
            cached, control = picked[:CONTROL_RUNS], picked[CONTROL_RUNS:]
            spread = pooled_spread([cached] if view.startswith("cold") else [base])
            alarms += shift_check(control, cached, spread).moved
            misses += not shift_check(rng.sample(slow, CONTROL_RUNS), cached, spread).moved
        out[view] = (alarms / trials, misses / trials)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--slow-runs", type=int, default=9)
    ap.add_argument("--duty", type=float, default=0.03)
    args = ap.parse_args()
    tasks = load_suite(find_suite("tiny"))
    task = min(tasks, key=lambda t: t.target.train_time_ms)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cores = run_cores()
        pool = LeasePool(work / "pool", gpus=[], cores=cores)
        settings = RunSettings(dataset=ensure_tiny_dataset(work / "cache"), threads=1, lease=lambda: pool.lease(0, 1))
        print(f"stale_check: control record {task.target.record} ({task.id}'s target), pinned to core {cores[0]}")
        base = measure(args.runs, work, settings, task, "unchanged")
        hog = multiprocessing.Process(target=_busy, args=(cores[0], args.duty), daemon=True)
        hog.start()
        try:
            slow = measure(args.slow_runs, work, settings, task, "slowed")
        finally:
            hog.kill()
    cv = statistics.stdev(base) / statistics.fmean(base)
    print(f"\nunchanged: {len(base)} runs, median {statistics.median(base):.0f} ms, CV {cv:.2%}")
    print(f"slowed ({args.duty:.0%} duty on the same core): {len(slow)} runs, median {statistics.median(slow):.0f} ms, "
          f"{statistics.median(slow) / statistics.median(base) - 1:+.1%}")
    combos = len(list(itertools.combinations(range(len(base)), CONTROL_RUNS)))
    print(f"check: {CONTROL_RUNS} control runs against a cached entry of {CONTROL_RUNS} "
          f"(resampled; {combos} ways to draw each)")
    for view, (fa, miss) in rates(base, slow).items():
        print(f"  {view}: false alarms {fa:.1%} (limit 5%), slowdown missed {miss:.1%} (limit 5%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
