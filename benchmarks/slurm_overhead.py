"""Slurm launcher vs. local: the tiny suite with the oracle under `-n 2`, side by side.

    python benchmarks/slurm_overhead.py [--repeats 3] [--workers 2]

Uses the Slurm cluster named by `SLURM_CONF` if `sinfo` answers, else starts the one-node test cluster of
tests/slurmcluster.py (Debian's slurm-wlm + munge, as root). Calibration runs once per launcher before the
measurement (Slurm calibrations are keyed by the kind of job), so the measured runs do only the items' own
training.
Local and Slurm runs alternate (local, slurm, slurm, local, ...) so machine noise hits both alike.

Prints per run: wall time, statuses, Slurm job ids; then the median wall of each side and their ratio, the
median and max submit-to-start latency of the jobs (from run.slurm.json), and whether every item got the
same status under both launchers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import slurmcluster  # noqa: E402


def _cluster(root: Path) -> tuple[dict[str, str], bool]:
    if os.environ.get("SLURM_CONF") and subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0:
        return dict(os.environ), False
    why = slurmcluster.unavailable()
    if why:
        sys.exit(f"no Slurm cluster: {why}")
    return slurmcluster.start(root), True


def _run(cmd: list[str], cwd: Path, env: dict[str, str], results: Path) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, f"--speedrun-results={results}"], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    records = [json.loads(line) for line in (results / "results.jsonl").read_text().splitlines()]
    latencies = [json.loads(p.read_text())["latency_s"] for p in results.glob("*/*/run.slurm.json")]
    return {"wall": wall, "rc": proc.returncode, "stdout": proc.stdout,
            "status": {r["task"]: r["status"] for r in records},
            "jobs": {r["task"]: r.get("slurm_job_id") for r in records}, "latency": latencies}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        env, started = _cluster(tmp_path / "cluster")
        work, cache = tmp_path / "work", tmp_path / "cache"
        work.mkdir()
        base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={work}", "--speedrun-suite=tiny",
                "--speedrun-agent=oracle", f"--speedrun-cache-dir={cache}", "-n", str(args.workers)]
        try:
            # t_i and t_i+1 of every task, once per launcher: Slurm calibrations are keyed by the kind of job
            for launcher in ("local", "slurm"):
                calib = _run([*base, f"--speedrun-launcher={launcher}"], work, env, tmp_path / f"calib-{launcher}")
                if calib["rc"] != 0:
                    sys.exit(f"calibration run ({launcher}) failed:\n{calib['stdout'][-2000:]}")
            runs: dict[str, list[dict]] = {"local": [], "slurm": []}
            order = []
            for r in range(args.repeats):
                order += ["local", "slurm"] if r % 2 == 0 else ["slurm", "local"]
            for i, launcher in enumerate(order):
                run = _run([*base, f"--speedrun-launcher={launcher}"], work, env, tmp_path / f"r{i}-{launcher}")
                runs[launcher].append(run)
                jobs = " ".join(f"{t}:{j}" for t, j in sorted(run["jobs"].items()) if j)
                print(f"{launcher:5s} run {i}: {run['wall']:6.1f} s  rc={run['rc']}  "
                      f"{' '.join(f'{t}={s}' for t, s in sorted(run['status'].items()))}  {jobs}", flush=True)
            summary = runs["slurm"][-1]["stdout"]
            table = [ln for ln in summary.splitlines() if "slurm job" in ln or "@" in ln]
        finally:
            if started:
                slurmcluster.stop(env)

    local = statistics.median(r["wall"] for r in runs["local"])
    slurm = statistics.median(r["wall"] for r in runs["slurm"])
    latency = [x for r in runs["slurm"] for x in r["latency"]]
    same = all(r["status"] == runs["local"][0]["status"] for r in runs["local"] + runs["slurm"])
    print(f"\ntiny suite, oracle, -n {args.workers}, {args.repeats} runs per launcher (interleaved)")
    print(f"local : median wall {local:6.1f} s")
    print(f"slurm : median wall {slurm:6.1f} s")
    print(f"ratio slurm/local = {slurm / local:.3f} ({slurm - local:+.1f} s per suite run, "
          f"{(slurm - local) / len(runs['local'][0]['status']):+.1f} s per item)")
    print(f"submit-to-start latency over {len(latency)} jobs: median {statistics.median(latency):.2f} s, "
          f"max {max(latency):.2f} s")
    print(f"same statuses under both launchers in every run: {same}")
    print("last Slurm summary table:\n" + "\n".join(table))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
