"""Devices for runs: GPU discovery (never through torch in the controller), and leases of GPUs and CPU cores
from a pool shared by every xdist worker, and the host's timing slot.

The pool is a JSON file guarded by a file lock in one directory per machine (`machine_pool_dir`), so every
xdist worker and every session on the host shares it. A lease is all-or-nothing: a run never starts with part
of what it needs. Leases held by a process that died are reclaimed.

The timing slot: a timed CPU run (calibration, control, final run, repeat, search node) also holds one of the
host's `timed_runs` slots (default 1), so timed runs take turns even on separate cores: four runs at once on
four cores of one 16-core host varied 8.36% (CV), one at a time 0.79% (issue 20). Agents hold cores but no
slot, and GPU runs hold their GPUs as before (docs/timing.md, "The timing slot").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from filelock import FileLock

from pytest_speedrun.errors import MissingInput, UsageError
from pytest_speedrun.files import thread_env, write_atomic

_UUID = re.compile(r"\(UUID:\s*([^)]+)\)")


# Test seam: a session sees this many run cores, 0..N-1, and pins nothing (FAKE_CORES_ENV=N). Lets a 2-core
# machine exercise what several run cores change (the timing slot's overlap test); use it only with
# SPEEDRUN_LEASE_DIR pointing at a pool of its own, since the fake ids are not this machine's cores.
FAKE_CORES_ENV = "SPEEDRUN_FAKE_RUN_CORES"
# Under Slurm: how many timed runs the node may run at once, for the job's own slot on its node (slurm._job).
NODE_SLOT_ENV = "SPEEDRUN_NODE_TIMED_RUNS"


def fake_run_cores(env: dict[str, str] | None = None) -> list[int] | None:
    """The run cores the test seam fakes (FAKE_CORES_ENV), or None when it is not set."""
    text = (os.environ if env is None else env).get(FAKE_CORES_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{FAKE_CORES_ENV}={text}: expected a positive number of fake run cores (a test seam)")
    return list(range(int(text)))


def usable_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return list(range(os.cpu_count() or 1))


def machine_pool_dir(tmp_root: str | None = None) -> Path:
    """Where every pytest-speedrun session of this user on this machine keeps its leases: one pool per machine,
    so two sessions (two terminals, or a test suite and a benchmark) never pin timed runs to the same core or GPU
    and share the timing slot. `SPEEDRUN_LEASE_DIR` moves it; `tmp_root` replaces the temporary directory."""
    override = os.environ.get("SPEEDRUN_LEASE_DIR")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(override) if override else Path(tmp_root or tempfile.gettempdir()) / f"pytest-speedrun-leases-{uid}"


def reserved_count(n_cores: int) -> int:
    """Cores no timed run gets: they are left to pytest, the xdist workers, the pumps and the OS. One per eight
    cores, at least one wherever there are two or more (a run that shares its core with the controller had
    6-10% run-to-run CV on a 2-core machine; alone on its core, 0.8%)."""
    return 0 if n_cores < 2 else max(1, n_cores // 8)


def run_cores(cores: list[int] | None = None) -> list[int]:
    """The cores timed runs are pinned to: the usable cores less the reserved ones (the lowest-numbered, where
    interrupts and housekeeping tend to land). The test seam's fake cores where FAKE_CORES_ENV is set."""
    if cores is None and (fake := fake_run_cores()) is not None:
        return fake
    cores = sorted(usable_cores() if cores is None else cores)
    return cores[reserved_count(len(cores)):]


# Threads of a timed CPU run unless --speedrun-threads says otherwise: one, pinned to its own core. That is how
# the 0.79% CV of issue 20 was measured (record 5 alone on a 16-core host); the default before was run cores ÷
# xdist workers, 14 threads there. gpu_check.py's quiet-host part times one row with more threads per run.
TIMED_RUN_THREADS = 1


def cpu_threads(override: int | None = None) -> int:
    """Threads (and leased cores) per timed CPU run: `override` (--speedrun-threads) if given, else
    TIMED_RUN_THREADS. Runs take turns through the timing slot, so they no longer split the cores among
    workers."""
    return max(1, override) if override is not None else TIMED_RUN_THREADS


def parse_gpu_list(text: str, option: str = "--speedrun-gpus") -> list[str]:
    ids = [x.strip() for x in text.split(",")]
    if any(not x for x in ids) or len(set(ids)) != len(ids):
        raise UsageError(f"{option}={text}: expected distinct comma-separated GPU ids, e.g. 0,1,2,3")
    return ids


def discover_gpus(override: str | None = None, env: dict[str, str] | None = None,
                  nvidia_smi: str = "nvidia-smi") -> list[str]:
    """GPU ids runs may use, as values for CUDA_VISIBLE_DEVICES.

    `--speedrun-gpus` wins; else the user's CUDA_VISIBLE_DEVICES (its entries, never physical indices, so a
    slice of it is what runs see); else `nvidia-smi -L` (UUIDs where it prints them); else none."""
    env = os.environ if env is None else env
    if override:
        return parse_gpu_list(override)
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [x.strip() for x in visible.split(",") if x.strip()]
        return [] if ids in ([], ["-1"]) or ids[0].startswith("-") else ids
    exe = shutil.which(nvidia_smi, path=env.get("PATH"))
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30, env=dict(env)).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    ids = []
    for i, line in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU ")):
        m = _UUID.search(line)
        ids.append(m.group(1).strip() if m else str(i))
    return ids


# Intra-op CPU threads of a process that feeds one GPU, at most. Such a process is launch-bound: its main thread
# runs the Python loop and queues kernels; the records' host-side tensor work is a shard read into pinned memory
# and the odd small conversion, and torch.compile's workers are processes of their own, sized by inductor, not
# by OMP_NUM_THREADS. More pool threads buy nothing there, and each one parks in a spin-wait after every CPU op
# on the cores the launching thread needs (14 on a 16-core H200 host, issue 19). Four keep a large host-side
# copy parallel; the GPU's whole core slice stays leased, so the threads it does not get stay free.
GPU_THREADS = 4


@dataclass(frozen=True)
class Lease:
    """Devices held by one run. `slot` names the set, for per-lease compile caches."""

    gpus: tuple[str, ...]
    cores: tuple[int, ...]
    token: str = ""
    waited_s: float = 0.0  # how long the run queued for these devices and the timing slot (other runs held them)
    timed: bool = False  # holds one of the host's timing slots
    node_timed_runs: int = 0  # under Slurm: the job takes a timing slot on its node, of this many (NODE_SLOT_ENV)

    @property
    def slot(self) -> str:
        body = "-".join(self.gpus) if self.gpus else "cpu" + "-".join(map(str, self.cores))
        return re.sub(r"[^A-Za-z0-9_.-]", "_", body)[:100]

    @property
    def threads(self) -> int:
        """CPU threads per process: a CPU run uses all its cores; each process of a GPU run feeds one GPU from
        that GPU's share of the cores, with at most GPU_THREADS of them."""
        if not self.gpus:
            return max(1, len(self.cores))
        return max(1, min(GPU_THREADS, len(self.cores) // len(self.gpus)))

    def env(self, cache_root: Path | None = None) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.cores:
            env.update(thread_env(self.threads))
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        if self.node_timed_runs:
            env[NODE_SLOT_ENV] = str(self.node_timed_runs)
        if cache_root is not None:
            # Kept across runs on the same devices, so compile caches stay warm; never shared by two runs.
            env["TORCHINDUCTOR_CACHE_DIR"] = str(cache_root / "inductor" / self.slot)
            env["TRITON_CACHE_DIR"] = str(cache_root / "triton" / self.slot)
        return env


@dataclass
class LeasePool:
    """A pool of GPUs and CPU cores in `directory`, shared by every process that opens the same directory, and
    the host's timing slots: a timed CPU lease also needs fewer than `timed_runs` timed leases held (each
    process counts against its own `timed_runs`, so sessions asking for different widths each keep theirs).
    `pin`: whether runs are pinned to their leased cores (False only for the FAKE_CORES_ENV test seam)."""

    directory: Path
    gpus: list[str]
    cores: list[int]
    poll_s: float = 0.2
    timed_runs: int = 1
    pin: bool = True
    _held: list[Lease] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.directory / "pool.lock"))
        self._state = self.directory / "pool.json"

    def _read(self) -> dict:
        try:
            state = json.loads(self._state.read_text())
        except (OSError, ValueError):
            state = {"gpus": {}, "cores": {}}
        for kind in ("gpus", "cores"):  # reclaim what dead processes held
            state[kind] = {k: v for k, v in state[kind].items() if pid_alive(int(v.split(":")[0]))}
        state["timed"] = [t for t in state.get("timed", []) if pid_alive(int(t.split(":")[0]))]
        # A GPU run's core slice, held by every GPU lease on it (slices overlap only with fewer cores than GPUs).
        slices = {k: [t for t in v if pid_alive(int(t.split(":")[0]))] for k, v in state.get("gpu_cores", {}).items()}
        state["gpu_cores"] = {k: v for k, v in slices.items() if v}
        return state

    def _write(self, state: dict) -> None:
        write_atomic(self._state, json.dumps(state, sort_keys=True))

    def cores_per_gpu(self) -> int:
        """Each GPU has its own slice of the pool's cores, for the process that feeds it."""
        return max(1, len(self.cores) // max(1, len(self.gpus)))

    def try_acquire(self, n_gpus: int, n_cores: int, timed: bool = False) -> Lease | None:
        """All-or-nothing. GPU runs hold their GPUs exclusively and get each GPU's own slice of cores (`n_cores`
        is not used for them): GPUs are leased whole, so two runs never share a slice, unless the machine has
        fewer cores than GPUs. CPU-only runs hold `n_cores` cores no other run holds, GPU slices included; a GPU
        run waits while a CPU run (another session's, without GPUs) holds a core of its slice. A `timed` CPU
        lease also takes a timing slot (none free: None); GPU leases never do."""
        token = f"{os.getpid()}:{time.monotonic_ns()}"
        timed = timed and n_gpus == 0
        with self._lock:
            state = self._read()
            if timed and len(state["timed"]) >= self.timed_runs:
                return None
            free_g = [g for g in self.gpus if g not in state["gpus"]]
            free_c = [c for c in self.cores if str(c) not in state["cores"] and str(c) not in state["gpu_cores"]]
            if len(free_g) < n_gpus or (n_gpus == 0 and len(free_c) < n_cores):
                return None
            gpus = tuple(free_g[:n_gpus])
            if n_gpus:
                per = self.cores_per_gpu()
                cores = tuple(dict.fromkeys(self.cores[(self.gpus.index(g) * per + k) % len(self.cores)]
                                            for g in gpus for k in range(per)))
                if any(str(c) in state["cores"] for c in cores):
                    return None
            else:
                cores = tuple(free_c[:n_cores])
            lease = Lease(gpus=gpus, cores=cores, token=token, timed=timed)
            if timed:
                state["timed"].append(token)
            state["gpus"].update({g: token for g in lease.gpus})
            if n_gpus:
                for c in lease.cores:
                    state["gpu_cores"].setdefault(str(c), []).append(token)
            else:
                state["cores"].update({str(c): token for c in lease.cores})
            self._write(state)
        self._held.append(lease)
        return lease

    def release(self, lease: Lease) -> None:
        with self._lock:
            state = self._read()
            for kind in ("gpus", "cores"):
                state[kind] = {k: v for k, v in state[kind].items() if v != lease.token}
            state["timed"] = [t for t in state["timed"] if t != lease.token]
            slices = {k: [t for t in v if t != lease.token] for k, v in state["gpu_cores"].items()}
            state["gpu_cores"] = {k: v for k, v in slices.items() if v}
            self._write(state)
        if lease in self._held:
            self._held.remove(lease)

    def release_all(self) -> None:
        for lease in list(self._held):
            self.release(lease)

    @contextmanager
    def lease(self, n_gpus: int, n_cores: int, who: str = "", on_wait: Callable[[str], None] | None = None,
              timed: bool = False) -> Iterator[Lease]:
        """Block until `n_gpus` GPUs and `n_cores` cores (and, `timed`, a timing slot) are free together; release
        them afterwards. `on_wait` hears once, in a line, that this lease waits (the item that asked for it
        reports it)."""
        if n_gpus > len(self.gpus):
            raise MissingInput(f"needs {n_gpus} GPU(s), this machine offers {len(self.gpus)} "
                               f"({', '.join(self.gpus) or 'none'}); use a node with more GPUs or --speedrun-nproc")
        n_cores = min(n_cores, len(self.cores))
        asked = time.monotonic()
        lease = self.try_acquire(n_gpus, n_cores, timed)
        waited = False
        while lease is None:
            if not waited and on_wait is not None:
                slot = (f" and the host's timing slot ({self.timed_runs} timed run(s) at once)"
                        if timed and not n_gpus else "")
                on_wait(f"{who} waiting for {n_gpus} GPU(s) and {n_cores} core(s){slot}")
            waited = True
            time.sleep(self.poll_s)
            lease = self.try_acquire(n_gpus, n_cores, timed)
        if waited:
            self._held.remove(lease)
            lease = replace(lease, waited_s=time.monotonic() - asked)
            self._held.append(lease)
        try:
            yield lease if self.pin else replace(lease, cores=())
        finally:
            self.release(lease)


@contextmanager
def no_lease() -> Iterator[Lease]:
    """What runs get outside a pool (plain library use): no GPUs assigned, no core pinning."""
    yield Lease(gpus=(), cores=())


@contextmanager
def node_slot_lease(timed_runs: int) -> Iterator[Lease]:
    """A Slurm run's lease where pytest runs: no local devices (Slurm assigns them); the job takes a timing slot
    of `timed_runs` on its node (`node_timing_slot`, through NODE_SLOT_ENV in its environment)."""
    yield Lease(gpus=(), cores=(), node_timed_runs=timed_runs)


@contextmanager
def node_timing_slot(env: dict[str, str], poll_s: float = 0.5) -> Iterator[float]:
    """On a Slurm node, around a job's command: a timing slot of the node's machine-wide pool (the same pool and
    lock local sessions on that node use), when the job's environment asks for one (NODE_SLOT_ENV, removed
    from `env` so the command never sees it). Yields how long it waited (0.0 without a slot). The pool is under
    /tmp, not the job's TMPDIR, which Slurm setups often make private to each job; where /tmp itself is private
    to a job, SPEEDRUN_LEASE_DIR must name a node-local directory all jobs see (docs/timing.md)."""
    text = env.pop(NODE_SLOT_ENV, "")
    if not text.isdigit() or int(text) < 1:
        yield 0.0
        return
    pool = LeasePool(machine_pool_dir("/tmp"), gpus=[], cores=[], poll_s=poll_s, timed_runs=int(text))
    with pool.lease(0, 0, timed=True) as lease:
        yield lease.waited_s


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process. A zombie is dead: a killed xdist worker stays one until the controller
    reaps it, and its leases must be reclaimed meanwhile."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
