"""Measure the tiny record ladder under the harness's thread and core plan, and the harness's own clock.

    python benchmarks/tiny_ladder.py [--seeds 0,1,2] [--torchrun]

Every record runs as items run it: pinned to a core no other run holds (resources.run_cores), with the threads
the plan gives one run (resources.cpu_threads), under the pump. Prints per record: steps, train_time per seed,
the median and its change against the previous record (the ladder needs at least 25% less each step), the
run-to-run CV, val_loss per seed, wall time, whether every run reached the target, and the agreement of the
harness-observed training time (timeline.py) with the reported one. `--torchrun` adds the last record under
torchrun with 2 processes. Keep the machine otherwise idle while it runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from pytest_speedrun.data.dataset import ensure_tiny_dataset
from pytest_speedrun.execution.resources import LeasePool, cpu_threads, run_cores
from pytest_speedrun.pipeline.item import SCRIPT_NAME, RunSettings, execute_script
from pytest_speedrun.tasks.manifest import adhoc_task, find_suite, load_suite


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--torchrun", action="store_true")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = load_suite(find_suite("tiny"))
    records = [tasks[0].start] + [t.target for t in tasks]
    target = tasks[0].target_val_loss
    threads, cores = cpu_threads(), run_cores()
    print(f"tiny ladder: {len(records)} records, seeds {seeds}, {threads} thread(s) per run pinned to core(s) "
          f"{cores}, target val_loss {target}")
    print(f"{'record':>6} {'steps':>5} {'train_time ms per seed':>26} {'median':>7} {'change':>6} {'CV':>5} "
          f"{'val_loss per seed':>22} {'wall s':>6} ok  observed/reported - 1")
    prev, agreement = None, []
    with tempfile.TemporaryDirectory() as tmp:
        pool = LeasePool(Path(tmp) / "pool", gpus=[], cores=cores)
        settings = RunSettings(dataset=ensure_tiny_dataset(Path(tmp) / "cache"), threads=threads,
                               lease=lambda: pool.lease(0, threads))
        runs = [(rec, tasks[0], seeds) for rec in records]
        if args.torchrun:
            last = records[-1].script.path
            runs.append((records[-1], adhoc_task(last, target_val_loss=target, nproc=2, env=tasks[0].launch.env), [0]))
        for i, (rec, task, rec_seeds) in enumerate(runs):
            times, losses, walls, ok, agree = [], [], [], True, []
            for seed in rec_seeds:
                work = Path(tmp) / f"r{i}-s{seed}"
                work.mkdir()
                script = work / SCRIPT_NAME
                script.write_text(rec.script.path.read_text())
                run_settings = replace(settings, nproc=task.launch.nproc_per_node)
                ex = execute_script(script, task, run_settings, seed, work / "run.log")
                if ex.metrics is None:
                    print(f"record {rec.record} seed {seed}: {ex.verdict.status} {ex.verdict.reasons}")
                    return 1
                times.append(ex.metrics.train_time_ms)
                losses.append(ex.metrics.val_loss)
                walls.append(ex.outcome.wall_s)
                ok = ok and ex.metrics.val_loss <= target
                if ex.timeline is not None and ex.timeline.train_time_observed_ms:
                    agree.append(ex.timeline.train_time_observed_ms / ex.metrics.train_time_ms - 1)
            agreement += agree
            med = statistics.median(times)
            torchrun = task.launch.nproc_per_node > 1
            change = "torchrun" if torchrun else (f"{(med / prev - 1) * 100:+.0f}%" if prev else "-")
            cv = f"{statistics.stdev(times) / statistics.fmean(times):.1%}" if len(times) > 1 else "-"
            print(f"{rec.record:>6} {rec.steps or '':>5} {' / '.join(f'{t:.0f}' for t in times):>26} {med:>7.0f} "
                  f"{change:>6} {cv:>5} {' / '.join(f'{v:.4f}' for v in losses):>22} "
                  f"{statistics.median(walls):>6.1f} {'yes' if ok else 'NO':>3}  "
                  f"{', '.join(f'{a:+.3%}' for a in agree)}", flush=True)
            if not torchrun:
                prev = med
    if agreement:
        print(f"clock agreement over {len(agreement)} runs: max |observed/reported - 1| = "
              f"{max(abs(a) for a in agreement):.3%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
