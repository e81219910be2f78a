"""The process between the harness and a training command: log pump, clock, CPU accounting and watchdog.

Started by the harness as `python pump.py [options] -- command...` (by file path, so it imports nothing but the
standard library: it also runs on Slurm nodes and must start in milliseconds). It

* runs the command in its own process group (the pump's: the harness starts the pump as a session leader), with
  stdout and stderr on one pipe, its CPU affinity and address-space limit applied between fork and exec;
* writes every output line to the log as it arrives and, to the timeline file beside it, the arrival time of
  that line (seconds since the command started), the line's byte offset in the log and the CPU seconds the run's
  process tree had used by then (`TreeCPU`), so the harness has a clock of its own that the script cannot touch
  (see timeline.py);
* samples the run-queue delay and CPU time of every thread of the run (`/proc/<pid>/task/<tid>/schedstat`) and,
  from /proc/stat, how much CPU others used on the run's cores, how busy the other cores were and how much time
  the hypervisor stole from the run's cores, and a CPU probe on the run's cores before it starts and after it
  ends (probe_s). From these it counts the wait that disturbed the timed work (`disturbing_wait`): the time the
  run's working threads were ready to compute but the core was held by someone outside the run. All of it goes
  to the stats file at the end;
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


def _task_children(pid: int) -> list[int] | None:
    """The children of every thread of `pid` (Linux's /proc/<pid>/task/<tid>/children); [] when the process is
    gone, None when this kernel has no such file (CONFIG_PROC_CHILDREN)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread exited meanwhile
            return None
        except (OSError, ValueError):
            continue
    return out


def _scan_descendants(root: int) -> list[int]:
    """`root` and every process below it, from every process's parent in /proc/*/stat (the fallback: it reads
    one file per process on the machine, a few ms per call on a busy node)."""
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


def _descendants(root: int) -> list[int]:
    """`root` and every process below it (Linux /proc). Walks down from `root` through its threads' children
    files, so the cost follows the run's tree, not the machine's process count; falls back to the full scan
    on a kernel without those files."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        children = _task_children(pid)
        if children is None:
            return _scan_descendants(root)
        out.append(pid)
        todo.extend(children)
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
    """Run-queue delay and CPU time of every thread of a process tree, sampled every SAMPLE_S (a thread's last
    sample counts), and the wait of the run's work (`work_wait_ns`, see `interval_work_wait`)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.threads: dict[tuple[int, int], tuple[int, int]] = {}  # (pid, tid) -> (cpu ns, wait ns)
        self.work_wait_ns = 0.0

    def sample(self) -> list[int]:
        """Read every thread of the tree now; returns the tree's pids."""
        pids = _descendants(self.root)
        now: dict[tuple[int, int], tuple[int, int]] = {}
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
                now[(pid, int(tid))] = (cpu, wait)
        self.work_wait_ns += interval_work_wait(self.threads, now)
        self.threads.update(now)
        return pids

    def totals(self) -> dict[str, float]:
        """`cpu_s` and `wait_all_s`: sums over every thread; `wait_work_s`: the wait of the run's work."""
        return {"cpu_s": sum(c for c, _ in self.threads.values()) / 1e9,
                "wait_all_s": sum(w for _, w in self.threads.values()) / 1e9, "wait_work_s": self.work_wait_ns / 1e9}


def interval_work_wait(before: dict[tuple[int, int], tuple[int, int]],
                       after: dict[tuple[int, int], tuple[int, int]]) -> float:
    """The wait of the run's work between two samples of its threads' (cpu ns, wait ns): each thread's wait in
    the interval weighted by its demand there (CPU plus wait: the time it wanted a core). A thread doing the work
    counts in full; idle pool workers and helpers (watchdogs, OMP threads parked between ops) next to nothing.
    Threads that work side by side give their average wait (how much later their joint work ended); work done
    one thread after another (torchrun's agent, then its worker) adds up, interval by interval."""
    waits = []
    for key, (cpu, wait) in after.items():
        cpu0, wait0 = before.get(key, (0, 0))  # a thread born since the last sample: all of its life so far
        waits.append((wait - wait0, (cpu - cpu0) + (wait - wait0)))
    demand = sum(d for _, d in waits)
    return sum(w * d for w, d in waits) / demand if demand > 0 else 0.0


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped children and their reaped descendants (getrusage); with the command
    reaped, its whole tree's CPU, threads that exited between samples included."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def outside_cpu_s(before: dict, after: dict, cores: list[int], run_cpu_s: float) -> float:
    """Core-seconds that something other than the run (another process, interrupts, the kernel's threads) used on
    `cores`, the cores the run was confined to, between the two `cpu_times()` readings: their busy time less
    the hypervisor's steal (counted apart) less the run's own CPU. Resolution: a clock tick per core."""
    busy = sum((after[c][0] - before[c][0]) - (after[c][2] - before[c][2])
               for c in cores if c in before and c in after)
    return max(0.0, busy - run_cpu_s)


def disturbing_wait(wait_work_s: float, outside_s: float, n_cores: int) -> float:
    """Seconds the run's work waited for a core that someone outside the run held.

    Two bounds, the smaller wins:
    * `wait_work_s`: the wait of the run's work (`interval_work_wait`, summed over the run). Idle threads add
      next to nothing; it still holds the run's own threads queuing behind each other.
    * `outside_s / n_cores`: the share of the run's cores that others used over the run. Waits beyond it are
      the run's own threads queuing behind each other (more runnable threads than cores: an OMP pool larger than
      the lease, compile workers): the script's own doing, the same on every run, not a disturbance.
    Limits: the run queue does not say whom a thread waited behind, so a run that both oversubscribes its cores
    and shares them with others is charged the others' share in full (they did take that much of the cores it
    wanted); the second bound is over the whole run, so own queuing in one phase and others' CPU in another
    still meet; and others' CPU is known to a clock tick per core (10 ms)."""
    if n_cores <= 0:
        return wait_work_s
    return max(0.0, min(wait_work_s, outside_s / n_cores))


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


# CPU-speed probes on the run's cores before the run and after it: 3 + 3 (about 90 ms of CPU and wall per run),
# the median of 6 stands two outliers. Each probe is the same fixed loop as always, so probe_s stays comparable
# with references measured earlier (noise.drift); only how many are taken changed (it was 5 + 5).
PROBES = 3


def probe_s() -> float:
    """Seconds for a fixed bit of pure-Python arithmetic (about 15 ms): the speed of this core now. A virtual
    machine whose host slows a virtual CPU (other tenants, power limits) shows it here as in the run, while the
    run-queue and steal counters may show nothing."""
    start = time.perf_counter()
    x = 0
    for i in range(200_000):
        x += i * i
    return time.perf_counter() - start


def probe_on(cores: list[int], n: int = PROBES) -> list[float]:
    """`n` probes on `cores` (the lease is ours before the command starts and after it ends), then back."""
    if n <= 0:
        return []
    if not cores or not hasattr(os, "sched_setaffinity"):
        return [probe_s() for _ in range(n)]
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        return [probe_s() for _ in range(n)]
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
    ap.add_argument("--probes", type=int, default=PROBES,
                    help="CPU probes before the run and as many after it (0: none, and no probe_s in the stats)")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    cores = [int(c) for c in args.cores.split(",") if c]
    # The group's SIGTERM (the harness ending the run) is for the command; the pump keeps pumping until the
    # command's output ends, so no line is lost.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The cores the run may use: its lease, or wherever the pump itself may run (an unpinned run).
    confined = cores or (sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [])
    shares_cores = not cores
    if cores and hasattr(os, "sched_setaffinity"):  # the pump itself stays off the run's cores when it can
        rest = sorted(set(os.sched_getaffinity(0)) - set(cores))
        if rest:
            os.sched_setaffinity(0, rest)
        shares_cores = not rest
    stop = threading.Event()
    if args.parent:
        if os.getppid() != args.parent:  # the parent is already gone: never start the command
            return 1
        threading.Thread(target=_watch_parent, args=(args.parent, args.marker, stop), daemon=True).start()
    probes = probe_on(cores, args.probes)  # the run's own cores, before the run starts and after it ends
    start = time.monotonic()
    cpus_before, children_before, own_before = cpu_times(), children_cpu_s(), time.process_time()
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
    cpus_after, wall = cpu_times(), time.monotonic() - start  # before the probes, which run on the run's cores
    totals = acct.totals()
    # The reaped tree's CPU is complete; the samples also hold processes that escaped the tree.
    run_cpu = max(totals["cpu_s"], children_cpu_s() - children_before)
    pump_cpu = time.process_time() - own_before if shares_cores else 0.0  # the pump's own share of those cores
    outside = max(0.0, outside_cpu_s(cpus_before, cpus_after, confined, run_cpu) - pump_cpu)
    probes += probe_on(cores, args.probes)
    stats = {"wall_s": wall, **totals, "threads": len(acct.threads), "outside_s": outside,
             "run_cores": len(confined), "wait_s": disturbing_wait(totals["wait_work_s"], outside, len(confined)),
             **machine_load(cpus_before, cpus_after, cores)}
    if probes:
        stats["probe_s"] = sorted(probes)[len(probes) // 2]
    tmp = args.stats.with_suffix(args.stats.suffix + ".tmp")
    tmp.write_text(json.dumps(stats, sort_keys=True) + "\n")
    os.replace(tmp, args.stats)
    if rc < 0:
        signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
