"""Harness overhead: one tiny item through pytest vs. the same script run directly, side by side.

    python benchmarks/overhead.py [--task tiny04] [--repeats 5]

Both sides run the task's target record (what the oracle agent submits) under the same env contract and
thread count. The pytest side includes interpreter start-up, plugin import, collection, workspace setup,
the agent, log parsing and reporting; calibration is done once beforehand so it is not counted. Runs are
interleaved (direct, pytest, direct, pytest, ...) so machine noise hits both sides alike; medians and their
ratio are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_speedrun.data.dataset import ensure_tiny_dataset
from pytest_speedrun.execution.resources import cpu_threads
from pytest_speedrun.execution.runner import contract_env
from pytest_speedrun.tasks.manifest import find_suite, load_task


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="tiny04")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    task = load_task(find_suite("tiny") / f"{args.task}.toml")
    with tempfile.TemporaryDirectory() as tmp:
        cache, work = Path(tmp) / "cache", Path(tmp) / "work"
        work.mkdir()
        dataset = ensure_tiny_dataset(cache)
        threads = cpu_threads(workers=1)
        env = contract_env(train_glob=dataset.train_glob, val_glob=dataset.val_glob, val_tokens=dataset.val_tokens,
                           task_env=task.launch.env, seed=0, threads=threads)
        script = task.target.script.path
        assert script is not None
        pytest_cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--rootdir={work}",
                      "--speedrun-suite=tiny", "--speedrun-agent=oracle", f"--speedrun-cache-dir={cache}",
                      f"--speedrun-results={work / 'results'}", f"--speedrun-threads={threads}", "-k", args.task]
        # Calibration (t_i and t_{i+1}) once, outside the measurement.
        subprocess.run(pytest_cmd, cwd=work, env=dict(os.environ), check=True, capture_output=True)

        direct, through_pytest = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, str(script)], cwd=work, env=env, check=True, capture_output=True)
            direct.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(pytest_cmd, cwd=work, env=dict(os.environ), check=True, capture_output=True)
            through_pytest.append(time.perf_counter() - t0)

    d, p = statistics.median(direct), statistics.median(through_pytest)
    print(f"task {args.task}: {script.name}, {threads} thread(s), {args.repeats} interleaved repeats")
    print(f"direct  python script : median {d:7.2f} s  ({', '.join(f'{x:.2f}' for x in direct)})")
    print(f"through pytest item   : median {p:7.2f} s  ({', '.join(f'{x:.2f}' for x in through_pytest)})")
    print(f"overhead: {p - d:+.2f} s, ratio pytest/direct = {p / d:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
