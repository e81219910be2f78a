"""How fast a run dies when its pytest is SIGKILLed (a terminal that died, an OOM kill, `kill -9`).

    python benchmarks/kill_latency.py [--repeats 5]

Starts pytest on a one-task suite whose record writes its pid and sleeps, under plain python and under torchrun
with two processes; SIGKILLs pytest once the run is up; and times how long until every process of the run is
gone (the pump between pytest and the run notices its parent's death; see pytest_speedrun/pump.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fakes import manifest  # noqa: E402

RECORD = '''\
import os, time
with open(os.environ["RECORD_FILE"], "a") as f:
    f.write(f"{os.getpid()}\\n")
time.sleep(300)
'''


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def once(root: Path, nproc: int) -> float:
    record = root / "pids.txt"
    suite = root / "hang"
    (suite / "records").mkdir(parents=True)
    for k in (1, 2):
        (suite / "records" / f"record_{k}.py").write_text(RECORD)
    text = manifest("hang01", "records/record_1.py", "records/record_2.py", reference="manifest", hints=False)
    env = f'env = {{ NANOGPT_VAL_TOKENS = "4096", RECORD_FILE = "{record}" }}'
    (suite / "hang01.toml").write_text(text.replace('env = { NANOGPT_VAL_TOKENS = "4096" }', env))
    proc = subprocess.Popen([sys.executable, "-m", "pytest", f"--speedrun-suite={suite}", "--speedrun-agent=baseline",
                             f"--speedrun-cache-dir={root / 'cache'}", f"--speedrun-nproc={nproc}",
                             f"--rootdir={root}", "-p", "no:cacheprovider"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not record.exists() or len(record.read_text().split()) < nproc:
        time.sleep(0.05)
    pids = [int(p) for p in record.read_text().split()]
    killed = time.perf_counter()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    while any(alive(p) for p in pids):
        time.sleep(0.01)
    return time.perf_counter() - killed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"kill_latency: SIGKILL of pytest -> every process of its run gone ({args.repeats} repeats, "
          f"{os.cpu_count()} cores)")
    for nproc, label in ((1, "python"), (2, "torchrun, 2 processes")):
        times = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                times.append(once(Path(tmp), nproc))
        print(f"  {label}: median {statistics.median(times):.2f} s, max {max(times):.2f} s "
              f"({', '.join(f'{t:.2f}' for t in times)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
