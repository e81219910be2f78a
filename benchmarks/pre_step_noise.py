"""How much a genuine run's work before its first training-step line varies, in wall time and in CPU time.

    python benchmarks/pre_step_noise.py [--runs 5] [--duty 0.5] [--records 4,5]

Runs each tiny record `--runs` times as the harness runs it (pinned to its core, under the pump), then `--runs`
times while a duty-cycled busy process pinned to the same core takes `--duty` of it and the page cache is
dropped before each run (where this process may: root on Linux). For each run it prints the two pre-step
figures the integrity rule can use (docs/integrity.md): the wall time until the first training-step line
arrived (`first_step_s`) and the CPU seconds the run's processes had used by then (`first_step_cpu_s`). The
summary gives, per record and condition, the median and the largest deviation from the quiet median. Keep the
machine otherwise idle.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
from pathlib import Path

from pytest_speedrun.data.dataset import ensure_tiny_dataset
from pytest_speedrun.execution.resources import LeasePool, run_cores
from pytest_speedrun.pipeline.item import SCRIPT_NAME, RunSettings, execute_script
from pytest_speedrun.tasks.manifest import find_suite, load_suite

sys.path.insert(0, str(Path(__file__).parent))
from stale_check import _busy  # noqa: E402


def _drop_caches() -> bool:
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def measure(script_text: str, task, settings: RunSettings, work: Path, label: str, n: int,
            cold: bool) -> list[tuple[float, float]]:
    out = []
    for i in range(n):
        d = work / f"{label}{i}"
        d.mkdir()
        (d / SCRIPT_NAME).write_text(script_text)
        dropped = _drop_caches() if cold else False
        ex = execute_script(d / SCRIPT_NAME, task, settings, 0, d / "run.log")
        tl = ex.timeline
        assert tl is not None and tl.first_step_cpu_s is not None, (label, ex.verdict)
        out.append((tl.first_step_s, tl.first_step_cpu_s))
        print(f"  {label} {i}: wall {tl.first_step_s:.2f} s, cpu {tl.first_step_cpu_s:.2f} s"
              f"{' (page cache dropped)' if dropped else ''}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duty", type=float, default=0.5)
    ap.add_argument("--records", default="4,5")
    args = ap.parse_args()
    wanted = {int(r) for r in args.records.split(",")}
    scripts = {}
    tasks = load_suite(find_suite("tiny"))
    for task in tasks:
        for ref in (task.start, task.target):
            if ref.record in wanted:
                scripts[ref.record] = (task, ref.script.path.read_text())
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cores = run_cores()
        pool = LeasePool(work / "pool", gpus=[], cores=cores)
        settings = RunSettings(dataset=ensure_tiny_dataset(work / "cache"), threads=1, lease=lambda: pool.lease(0, 1))
        print(f"pre_step_noise: records {sorted(scripts)}, pinned to core {cores[0]}, {args.runs} runs each quiet "
              f"and with a {args.duty:.0%} busy process on the same core and a cold page cache")
        for record, (task, text) in sorted(scripts.items()):
            quiet = measure(text, task, settings, work, f"record{record}-quiet", args.runs, cold=False)
            hog = multiprocessing.Process(target=_busy, args=(cores[0], args.duty), daemon=True)
            hog.start()
            try:
                loaded = measure(text, task, settings, work, f"record{record}-loaded", args.runs, cold=True)
            finally:
                hog.kill()
            summary.append((record, quiet, loaded))
    print("\nrecord  figure  quiet median  quiet max dev  loaded median  loaded max dev (from the quiet median)")
    for record, quiet, loaded in summary:
        for k, name in ((0, "wall"), (1, "cpu")):
            q = [r[k] for r in quiet]
            ld = [r[k] for r in loaded]
            med = statistics.median(q)
            print(f"{record:<7} {name:<7} {med:7.2f} s     {max(abs(x - med) for x in q) / med:7.1%}       "
                  f"{statistics.median(ld):7.2f} s      {max(abs(x - med) for x in ld) / med:7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
