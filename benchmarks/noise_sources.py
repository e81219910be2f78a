"""Does anything the harness records explain a run's time? Read the runs a session (or `fsr_stability`) left behind.

    python benchmarks/noise_sources.py DIR [DIR ...]

DIR: a cache directory (its calibration/ runs) or a results directory (its items' runs), searched recursively.
Every run is a `*.log` with its `*.cpu.json` beside it (the pump's accounting) and the script it ran nearby. Runs
are grouped by the sha256 of that script, so the same record run for calibration, as the control and unchanged
by the baseline agent is one group. Per group it prints the runs' train_time spread, and how much of it the
pump's figures explain: the correlation of log(train_time) with log(probe_s) (the CPU probe on the run's core),
with the hypervisor's steal, with the other cores' load and with the wait for the run's own core; and, from the
run's timeline, how far its speed moved inside the run (the slowest quarter's median step time over the fastest
quarter's, validation pauses left out). Identical
deterministic scripts (same losses to the last digit) whose time moves while these stay flat show noise that the
harness cannot see, so cannot correct for: only its spread can be measured.
"""

from __future__ import annotations

import hashlib
import math
import statistics
import sys
from pathlib import Path

from pytest_speedrun.execution.runner import read_cpu_stats, timeline_path
from pytest_speedrun.judging.metrics import MetricsError, parse_log
from pytest_speedrun.judging.timeline import TRAIN_LINE, read_stamped


def _script(log: Path) -> Path | None:
    for candidate in (log.parent / "train_gpt2.py", log.parent / "workspace" / "train_gpt2.py"):
        if candidate.exists():
            return candidate
    return None


def runs(dirs: list[Path]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for d in dirs:
        for log in sorted(d.rglob("*.log")):
            cpu, script = read_cpu_stats(log), _script(log)
            if not (cpu and script):
                continue
            try:
                m = parse_log(log)
            except MetricsError:
                continue  # a run that did not finish: no train time to compare
            key = hashlib.sha256(script.read_bytes()).hexdigest()[:12]
            groups.setdefault(key, []).append({"ms": m.train_time_ms, "loss": m.val_loss, "mtime": log.stat().st_mtime,
                                               "swing": within_run_swing(log),
                                               "where": str(log.relative_to(d)), **cpu})
    return groups


def within_run_swing(log: Path) -> float | None:
    """The slowest quarter's median step time over the fastest quarter's, minus 1, from the gaps between
    consecutive training-step lines (a validation line in between breaks the pair); None without a timeline."""
    stamped = [(t, TRAIN_LINE.match(line.strip()) is not None) for t, line, _ in read_stamped(log, timeline_path(log))]
    steps = [b - a for (a, train_a), (b, train_b) in zip(stamped, stamped[1:]) if train_a and train_b]
    if len(steps) < 8:
        return None
    q = len(steps) // 4
    medians = [statistics.median(steps[i * q:(i + 1) * q]) for i in range(4)]
    return max(medians) / min(medians) - 1


def _corr(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3 or statistics.pstdev(xs) == 0 or statistics.pstdev(ys) == 0:
        return None
    return statistics.correlation(xs, ys)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    groups = runs([Path(a) for a in argv])
    print(f"noise_sources: {sum(map(len, groups.values()))} runs of {len(groups)} scripts in {', '.join(argv)}")
    print("script        runs  train_time min / median / max s   CV   losses  corr(log time, log x) for x = "
          "probe  steal  others_busy  wait;  swing inside a run (median)")
    for key, rs in sorted(groups.items(), key=lambda kv: -statistics.median(r["ms"] for r in kv[1])):
        if len(rs) < 2:
            continue
        t = [r["ms"] for r in rs]
        logt = [math.log(x) for x in t]
        cv = statistics.stdev(t) / statistics.fmean(t)
        cells = []
        for field in ("probe_s", "steal", "others_busy", "wait_s"):
            pairs = [(lt, r[field]) for lt, r in zip(logt, rs) if r.get(field) is not None]
            xs = [math.log(v) if field == "probe_s" and v > 0 else v for _, v in pairs]
            c = _corr([lt for lt, _ in pairs], xs)
            cells.append("  n/a" if c is None else f"{c:+.2f}")
        losses = len({r["loss"] for r in rs})
        swings = [r["swing"] for r in rs if r["swing"] is not None]
        swing = f"{statistics.median(swings):.0%}" if swings else "n/a"
        print(f"{key}  {len(rs):>4}  {min(t) / 1e3:7.1f} / {statistics.median(t) / 1e3:6.1f} / {max(t) / 1e3:6.1f}"
              f"  {cv:5.1%}  {losses:>6}  {'  '.join(cells)};  {swing}")
        lo, hi = min(rs, key=lambda r: r["ms"]), max(rs, key=lambda r: r["ms"])
        print(f"    fastest {lo['ms'] / 1e3:.1f} s (probe {lo.get('probe_s', 0) * 1e3:.1f} ms, steal "
              f"{lo.get('steal', 0):.2%})  slowest {hi['ms'] / 1e3:.1f} s (probe {hi.get('probe_s', 0) * 1e3:.1f} ms, "
              f"steal {hi.get('steal', 0):.2%}), {abs(hi['mtime'] - lo['mtime']) / 60:.0f} min apart")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
