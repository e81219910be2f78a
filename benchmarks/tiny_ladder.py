"""Measure the tiny record ladder: every record, several seeds, run exactly as the harness runs it.

    python benchmarks/tiny_ladder.py [--seeds 0,1,2] [--threads 2]

Prints per record: num steps, train_time and final val_loss per seed, their medians, the change of the
median train_time against the previous record (the ladder needs at least 25% less each step), the wall
time per run, and whether every run reached the tiny target val loss. Runs are sequential; keep the machine
otherwise idle while it runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from pytest_speedrun.data import ensure_tiny_dataset
from pytest_speedrun.harness import SCRIPT_NAME, RunSettings, execute_script
from pytest_speedrun.tasks import find_suite, load_suite


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = load_suite(find_suite("tiny"))
    records = [tasks[0].start] + [t.target for t in tasks]
    target = tasks[0].target_val_loss
    print(f"tiny ladder: {len(records)} records, seeds {seeds}, {args.threads} thread(s), target val_loss {target}")
    print(f"{'record':>6} {'steps':>5} {'train_time ms per seed':>30} {'median ms':>9} {'change':>7} "
          f"{'val_loss per seed':>26} {'median':>7} {'wall s':>6}  ok")
    prev = None
    with tempfile.TemporaryDirectory() as tmp:
        settings = RunSettings(dataset=ensure_tiny_dataset(Path(tmp) / "cache"), threads=args.threads)
        for rec in records:
            times, losses, walls, steps, ok = [], [], [], None, True
            for seed in seeds:
                work = Path(tmp) / f"r{rec.record}-s{seed}"
                work.mkdir()
                script = work / SCRIPT_NAME
                script.write_text(rec.script.path.read_text())
                ex = execute_script(script, tasks[0], settings, seed, work / "run.log")
                if ex.metrics is None:
                    print(f"record {rec.record} seed {seed}: {ex.verdict.status} {ex.verdict.reasons}")
                    return 1
                times.append(ex.metrics.train_time_ms)
                losses.append(ex.metrics.val_loss)
                walls.append(ex.outcome.wall_s)
                steps = ex.metrics.steps
                ok = ok and ex.metrics.val_loss <= target
            med = statistics.median(times)
            change = f"{(med / prev - 1) * 100:+.0f}%" if prev else "-"
            print(f"{rec.record:>6} {steps:>5} {' / '.join(f'{t:.0f}' for t in times):>30} {med:>9.0f} {change:>7} "
                  f"{' / '.join(f'{v:.4f}' for v in losses):>26} {statistics.median(losses):>7.4f} "
                  f"{statistics.median(walls):>6.1f}  {'yes' if ok else 'NO'}", flush=True)
            prev = med
    return 0


if __name__ == "__main__":
    sys.exit(main())
