"""The process between the harness and a training command: log pump, clock, CPU accounting and watchdog.

Started by the harness as `python pump.py [options] -- command...` (by file path, so it imports nothing but the
standard library: it also runs on Slurm nodes and must start in milliseconds). It

* runs the command in its own process group (the pump's: the harness starts the pump as a session leader), with
  stdout and stderr on one pipe, its CPU affinity and address-space limit applied between fork and exec;
* writes every output line to the log as it arrives and, to the timeline file beside it, the arrival time of
  that line (seconds since the command started), the line's byte offset in the log and the CPU seconds the run's
  process tree had used by then (`TreeCPU`), so the harness has a clock of its own that the script cannot touch
  (see timeline.py);
* samples the run-queue delay of every thread of the run (`/proc/<pid>/task/<tid>/schedstat`): the time the run
  was ready to compute but waited for a CPU held by someone else; and, from /proc/stat, how busy the other cores
  were and how much time the hypervisor stole from the run's cores, and a CPU probe on the run's cores before it
  starts and after it ends (probe_s). All of it goes to the stats file at the end;
* watches its parent, the pytest process that started it. When the parent dies (its terminal closed, SIGKILL,
  OOM), the run dies too: SIGTERM to the group, a short grace, then SIGKILL to the group and to any process
  that escaped it (found by the run marker in its environment). A run never outlives its session.

It exits with the command's exit status (a command killed by signal N makes the pump die of signal N too).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

POLL_S = 0.1  # how often the parent is checked: the run dies within about this much of pytest
SAMPLE_S = 0.5  # how often run-queue delays are sampled
GRACE_S = 2.0  # after the parent died: SIGTERM, this long, then SIGKILL
LINGER_S = 1.0  # how long output is still read after the command exited
CANNOT_START = 127  # the pump's exit status when the command could not be started


def _descendants(root: int) -> list[int]:
    """`root` and every process below it (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CPU_EVERY_S = 0.05  # the tree's CPU time is re-read at most this often (a line flood reuses the last figure)


def _proc_cpu_s(pid: int) -> float | None:
    """CPU seconds of one process: its own threads (utime + stime) and its reaped children (cutime + cstime)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return sum(int(x) for x in fields[11:15]) / CLK_TCK
    except (ValueError, IndexError):
        return None


class TreeCPU:
    """CPU seconds used so far by the run's process tree, cheap enough to read at every output line.

    It reads /proc/<pid>/stat of the processes known to be in the tree (the root, and whatever `Accounting`'s
    sampler found below it every SAMPLE_S), counting each one's own CPU and that of its children it has reaped.
    A process that exited keeps its last figure unless its parent reaped it (then the parent's counts it), so
    short-lived helpers are not lost. Resolution: one clock tick (10 ms)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.pids: set[int] = {root}
        self.last: dict[int, float] = {}
        self.read_at = -1.0
        self.value = 0.0
        self.lock = threading.Lock()

    def add(self, pids: list[int]) -> None:
        with self.lock:
            self.pids.update(pids)

    def now(self) -> float:
        t = time.monotonic()
        with self.lock:
            if t - self.read_at < CPU_EVERY_S:
                return self.value
            self.read_at = t
            for pid in list(self.pids):
                cpu = _proc_cpu_s(pid)
                if cpu is None:  # gone: reaped, so its parent's children time holds it from now on
                    self.pids.discard(pid)
                    self.last.pop(pid, None)
                    continue
                self.last[pid] = cpu
            self.value = sum(self.last.values())
            return self.value


class Accounting:
    """Run-queue delay and CPU time of every thread of a process tree, sampled (a thread's last sample counts)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.threads: dict[tuple[int, int], tuple[int, int]] = {}  # (pid, tid) -> (cpu ns, wait ns)

    def sample(self) -> list[int]:
        """Read every thread of the tree now; returns the tree's pids."""
        pids = _descendants(self.root)
        for pid in pids:
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                        cpu, wait = (int(x) for x in f.read().split()[:2])
                except (OSError, ValueError):
                    continue
                self.threads[(pid, int(tid))] = (cpu, wait)
        return pids

    def totals(self) -> dict[str, float]:
        return {"cpu_s": sum(c for c, _ in self.threads.values()) / 1e9,
                "wait_s": sum(w for _, w in self.threads.values()) / 1e9}


def cpu_times() -> dict[int, tuple[float, float, float]]:
    """Per CPU, seconds since boot of (busy, idle, steal) from /proc/stat. Busy includes steal: time the
    hypervisor gave this virtual CPU's host core to someone else."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                name, *vals = line.split()
                if name.startswith("cpu") and name != "cpu":
                    v = [int(x) for x in vals[:8]] + [0] * (8 - len(vals[:8]))
                    idle = v[3] + v[4]
                    out[int(name[3:])] = ((sum(v) - idle) / tick, idle / tick, v[7] / tick)
    except (OSError, ValueError):
        pass
    return out


def machine_load(before: dict, after: dict, cores: list[int]) -> dict[str, float]:
    """What else the machine did while the run ran: the busy fraction of the cores the run was not pinned to
    (other work there slows a pinned run through shared caches, memory and, on a VM, the host), and the steal
    fraction of the run's own cores."""
    def frac(cpus: list[int], part: int) -> float | None:
        used = total = 0.0
        for c in cpus:
            if c in before and c in after:
                b, a = before[c], after[c]
                dt = (a[0] - b[0]) + (a[1] - b[1])
                used += a[part] - b[part] if part != 1 else 0.0
                total += dt
        return used / total if total > 0 else None
    others = [c for c in after if c not in cores] if cores else []
    load = {}
    if (busy := frac(others, 0)) is not None:
        load["others_busy"] = busy
    if (steal := frac(cores or list(after), 2)) is not None:
        load["steal"] = steal
    return load


PROBES = 5  # CPU-speed probes on the run's cores before the run and after it


def probe_s() -> float:
    """Seconds for a fixed bit of pure-Python arithmetic (about 15 ms): the speed of this core now. A virtual
    machine whose host slows a virtual CPU (other tenants, power limits) shows it here as in the run, while the
    run-queue and steal counters may show nothing."""
    start = time.perf_counter()
    x = 0
    for i in range(200_000):
        x += i * i
    return time.perf_counter() - start


def probe_on(cores: list[int]) -> list[float]:
    """PROBES probes on `cores` (the lease is ours before the command starts and after it ends), then back."""
    if not cores or not hasattr(os, "sched_setaffinity"):
        return [probe_s() for _ in range(PROBES)]
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        return [probe_s() for _ in range(PROBES)]
    finally:
        os.sched_setaffinity(0, mine)


def _marked(marker: str) -> list[int]:
    needle = f"SPEEDRUN_RUN_ID={marker}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def end_run(marker: str, grace_s: float = GRACE_S) -> None:
    """SIGTERM our process group (the pump ignores it), wait up to `grace_s`, then SIGKILL everything of the run."""
    try:
        os.killpg(0, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and len(_descendants(os.getpid())) > 1:
        time.sleep(0.05)
    for pid in _marked(marker) if marker else []:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    os.killpg(0, signal.SIGKILL)  # the pump goes with its group


def _watch_parent(parent: int, marker: str, stop: threading.Event) -> None:
    while not stop.wait(POLL_S):
        if os.getppid() != parent:
            end_run(marker)


def _preexec(cores: list[int], max_memory: int | None):
    def apply() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if max_memory:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))
        if cores:
            os.sched_setaffinity(0, cores)
    return apply


def _pump_lines(stream, log_path: Path, timeline_path: Path, start: float, cpu: TreeCPU | None = None) -> None:
    with open(log_path, "ab") as log, open(timeline_path, "a", encoding="ascii") as timeline:
        for line in iter(stream.readline, b""):
            arrived = time.monotonic() - start
            used = f" {cpu.now():.2f}" if cpu is not None else ""
            timeline.write(f"{arrived:.6f} {log.tell()}{used}\n")
            log.write(line if line.endswith(b"\n") else line + b"\n")
            log.flush()
            timeline.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", required=True, type=Path)
    ap.add_argument("--timeline", required=True, type=Path)
    ap.add_argument("--stats", required=True, type=Path)
    ap.add_argument("--parent", type=int, default=0, help="pid whose death ends the run (0: don't watch)")
    ap.add_argument("--marker", default="", help="the run's SPEEDRUN_RUN_ID, to find processes that left the group")
    ap.add_argument("--cores", default="", help="CPU affinity of the command, e.g. 1,2")
    ap.add_argument("--max-memory", type=int, default=None)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    cores = [int(c) for c in args.cores.split(",") if c]
    # The group's SIGTERM (the harness ending the run) is for the command; the pump keeps pumping until the
    # command's output ends, so no line is lost.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if cores and hasattr(os, "sched_setaffinity"):  # the pump itself stays off the run's cores when it can
        rest = sorted(set(os.sched_getaffinity(0)) - set(cores))
        if rest:
            os.sched_setaffinity(0, rest)
    stop = threading.Event()
    if args.parent:
        if os.getppid() != args.parent:  # the parent is already gone: never start the command
            return 1
        threading.Thread(target=_watch_parent, args=(args.parent, args.marker, stop), daemon=True).start()
    probes = probe_on(cores)  # the run's own cores, before the run starts and after it ends
    start = time.monotonic()
    cpus_before = cpu_times()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                preexec_fn=_preexec(cores, args.max_memory))
    except OSError as exc:
        with open(args.log, "ab") as log:
            log.write(f"pump: {exc.strerror or exc}\n".encode())
        return CANNOT_START
    acct = Accounting(proc.pid)
    tree_cpu = TreeCPU(proc.pid)

    def sample() -> None:
        while not stop.wait(SAMPLE_S):
            tree_cpu.add(acct.sample())
    threading.Thread(target=sample, daemon=True).start()
    assert proc.stdout is not None
    reader = threading.Thread(target=_pump_lines, args=(proc.stdout, args.log, args.timeline, start, tree_cpu),
                              daemon=True)
    reader.start()
    rc = proc.wait()
    # A process the command left behind may hold the pipe open: its late output is not waited for (the harness
    # kills the group next).
    reader.join(timeout=LINGER_S)
    acct.sample()
    stop.set()
    probes += probe_on(cores)
    stats = {"wall_s": time.monotonic() - start, **acct.totals(), "threads": len(acct.threads),
             **machine_load(cpus_before, cpu_times(), cores), "probe_s": sorted(probes)[len(probes) // 2]}
    tmp = args.stats.with_suffix(args.stats.suffix + ".tmp")
    tmp.write_text(json.dumps(stats, sort_keys=True) + "\n")
    os.replace(tmp, args.stats)
    if rc < 0:
        signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
