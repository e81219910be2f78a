"""Scheduling efficiency of GPU leases under xdist: N sleep-based tasks on 8 simulated GPU slots with -n 8.

    python benchmarks/scheduling.py [--tasks 16] [--seconds 8] [--workers 8]

A fake `nvidia-smi` on PATH announces 8 GPUs; each task needs 1 GPU and its script only records when it ran
(and on which GPU) and sleeps. Reported:

* efficiency = sum of task run times / (slots x wall), for the run window (first start to last end: what the
  lease pool controls) and end to end (the whole pytest session, start-up of 8 workers included);
* whether two runs ever held the same GPU at the same time (must be never);
* the harness overhead per item: the JUnit test time minus the run's own wall time (median).
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
import xml.etree.ElementTree as ET
from pathlib import Path

RECORD = '''\
import json, os, time
start = time.time()
time.sleep({seconds})
with open(os.environ["RECORD_FILE"], "a") as f:
    f.write(json.dumps({{"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()}}) + "\\n")
ms = {ms}
print(f"step:1/1 train_loss:2.0 train_time:{{ms}}ms step_avg:{{ms}}ms")
print(f"step:1/1 val_loss:1.9500 train_time:{{ms}}ms step_avg:{{ms}}ms")
'''

MANIFEST = '''\
id = "sched{i:02d}"
suite = "sched"
target_val_loss = 2.0
[start]
record = 1
script = {{ path = "record_1.py" }}
train_time_ms = {ms}
[target]
record = 2
script = {{ path = "record_2.py" }}
train_time_ms = {half}
[launch]
nproc_per_node = 1
timeout_s = 600
supported_gpu_counts = [1]
env = {{ NANOGPT_VAL_TOKENS = "4096", RECORD_FILE = "{record}" }}
[data]
dataset = "tiny"
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    slots = 8
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suite, record = root / "sched", root / "runs.jsonl"
        suite.mkdir()
        ms = int(args.seconds * 900)
        for k in (1, 2):
            (suite / f"record_{k}.py").write_text(RECORD.format(seconds=args.seconds, ms=ms))
        for i in range(args.tasks):
            (suite / f"sched{i:02d}.toml").write_text(MANIFEST.format(i=i, ms=ms, half=ms // 2, record=record))
        bin_dir = root / "bin"
        bin_dir.mkdir()
        smi = bin_dir / "nvidia-smi"
        lines = "".join(f"echo 'GPU {g}: Fake GPU (UUID: GPU-fake-{g})'\n" for g in range(slots))
        smi.write_text("#!/bin/sh\n" + lines)
        smi.chmod(0o755)
        env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
        env.pop("CUDA_VISIBLE_DEVICES", None)
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--rootdir={root}",
               f"--speedrun-suite={suite}", "--speedrun-agent=baseline", f"--speedrun-cache-dir={root / 'cache'}",
               "-n", str(args.workers), f"--junitxml={root / 'r.xml'}"]
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        wall = time.time() - t0
        if proc.returncode != 0:
            print(proc.stdout[-3000:])
            return 1
        runs = [json.loads(ln) for ln in record.read_text().splitlines()]
        busy = sum(r["end"] - r["start"] for r in runs)
        window = max(r["end"] for r in runs) - min(r["start"] for r in runs)
        clashes = sum(1 for i, a in enumerate(runs) for b in runs[i + 1:]
                      if a["gpu"] == b["gpu"] and a["start"] < b["end"] and b["start"] < a["end"])
        records = [json.loads(ln) for ln in (root / ".speedrun" / "results.jsonl").read_text().splitlines()]
        wall_by_task = {r["task"]: r["wall_s"] for r in records}
        cases = ET.parse(root / "r.xml").getroot().iter("testcase")
        overhead = [float(c.get("time")) - wall_by_task[c.get("name").split("[")[0]] for c in cases]
    print(f"{args.tasks} tasks x {args.seconds:g} s on {slots} GPU slots, -n {args.workers}")
    print(f"efficiency, run window: {busy / (slots * window):.3f}  (busy {busy:.1f} s, window {window:.1f} s)")
    print(f"efficiency, end to end: {busy / (slots * wall):.3f}  (pytest wall {wall:.1f} s)")
    print(f"GPU clashes: {clashes}")
    print(f"harness overhead per item (JUnit time - run wall): median {statistics.median(overhead):.3f} s, "
          f"max {max(overhead):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
