"""Threads of a GPU run: how many a process that feeds one GPU gets, and which of its waits count as disturbance.

The end-to-end tests take the GPU path on this CPU machine: `--speedrun-gpus` names stand-in GPUs (and a fake
`nvidia-smi` is on PATH), so each run is leased a GPU and its core slice and launched through torchrun. The
stand-in record burns CPU in its main thread while its own extra threads queue on the same core (an
oversubscribed OMP pool, two helpers waking every 2 ms) and four more sit idle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes import manifest
from pytest_speedrun.execution import pump, runner
from pytest_speedrun.execution.resources import GPU_THREADS, Lease, LeasePool, run_cores
from pytest_speedrun.results import noise

pytest_plugins = ["pytester"]

WAIT_REASON = "of its time for its own core"  # noise.disturbance's wait reason

# A stand-in for a record on one GPU, on the CPU: no CUDA, the records' log format. Its main thread burns CPU in
# torch; its own threads queue for the same core: an intra-op pool larger than the lease (the 14 OMP threads of
# issue 19) and two helpers that wake every 2 ms; four more threads idle.
STANDIN = '''\
import os, sys, threading, time
import torch
if os.environ.get("RANK", "0") != "0":
    sys.exit(0)
print("launch", os.environ.get("LOCAL_RANK"), os.environ.get("OMP_NUM_THREADS"), os.environ.get("CUDA_VISIBLE_DEVICES"),
      flush=True)
torch.set_num_threads(3)
stop = threading.Event()
for _ in range(4):
    threading.Thread(target=stop.wait, daemon=True).start()
def helper():
    x = torch.randn(32, 32)
    while not stop.is_set():
        x @ x
        time.sleep(0.002)
for _ in range(2):
    threading.Thread(target=helper, daemon=True).start()
a = torch.randn(256, 256)
N, BURN_S = 10, {burn_s}
print(f"step:0/{{N}} val_loss:5.0000 train_time:0ms step_avg:0.00ms", flush=True)
ms = 0.0
for step in range(1, N + 1):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < BURN_S / N:
        a @ a
    ms += 1000 * (time.perf_counter() - t0)
    print(f"step:{{step}}/{{N}} train_loss:3.0 train_time:{{ms:.0f}}ms step_avg:{{ms / step:.2f}}ms", flush=True)
stop.set()
print(f"step:{{N}}/{{N}} val_loss:1.9500 train_time:{{ms:.0f}}ms step_avg:{{ms / N:.2f}}ms", flush=True)
'''


# --- the threads a GPU run gets ------------------------------------------------------------------------------

def test_a_gpu_process_gets_a_few_threads_and_keeps_its_whole_slice(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path / "pool", gpus=["0"], cores=list(range(2, 16)))  # a 16-core host, one GPU
    lease = pool.try_acquire(1, 0)
    assert lease is not None
    assert lease.cores == tuple(range(2, 16))  # the slice stays leased: no other run lands there
    assert lease.threads == GPU_THREADS and lease.env()["OMP_NUM_THREADS"] == str(GPU_THREADS)


def test_a_narrow_slice_bounds_a_gpu_process_threads() -> None:
    assert Lease(gpus=tuple("01234567"), cores=tuple(range(2, 16))).threads == 1  # 14 cores for 8 GPUs
    assert Lease(gpus=("0", "1"), cores=(2, 3, 4, 5)).threads == 2
    assert Lease(gpus=(), cores=tuple(range(14))).threads == 14  # a CPU run still uses all its cores


def test_a_cpu_run_never_lands_on_a_gpu_runs_slice(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path / "pool", gpus=["0", "1"], cores=[2, 3, 4, 5])
    gpu = pool.try_acquire(1, 0)
    assert gpu is not None and gpu.cores == (2, 3)
    cpu = pool.try_acquire(0, 2)
    assert cpu is not None and cpu.cores == (4, 5)
    assert pool.try_acquire(0, 1) is None  # 2 and 3 are the GPU run's
    assert pool.try_acquire(1, 0) is None  # GPU 1's slice, 4 and 5, is held by the CPU run
    pool.release(cpu)
    other = pool.try_acquire(1, 0)
    assert other is not None and other.gpus == ("1",)
    pool.release(gpu)
    late = pool.try_acquire(0, 2)
    assert late is not None and late.cores == (2, 3)


# --- which waits count -----------------------------------------------------------------------------------------

MS = 1_000_000  # ns


def test_idle_threads_waits_weigh_next_to_nothing() -> None:
    main = {(1, 1): (400 * MS, 100 * MS)}  # in a 0.5 s interval: ran 0.4 s, waited 0.1 s
    idle = {(1, t): (1 * MS, 4 * MS) for t in range(2, 12)}  # ten threads that wake now and then
    assert pump.interval_work_wait({}, main) == pytest.approx(100 * MS)
    assert pump.interval_work_wait({}, {**main, **idle}) == pytest.approx((100 * 500 + 10 * 4 * 5) / 550 * MS)
    assert pump.interval_work_wait({}, {**main, **idle}) < 100 * MS  # the old sum: 140 ms


def test_work_in_parallel_waits_its_average_and_work_in_sequence_adds_up() -> None:
    half = (250 * MS, 250 * MS)
    assert pump.interval_work_wait({}, {(1, 1): half, (2, 2): half}) == pytest.approx(250 * MS)
    agent_first = {(1, 1): half}  # torchrun's agent imports torch, then its worker does
    worker_next = {(1, 1): (251 * MS, 250 * MS), (2, 2): half}
    total = pump.interval_work_wait({}, agent_first) + pump.interval_work_wait(agent_first, worker_next)
    assert total == pytest.approx(500 * MS, rel=0.01)


def test_a_thread_starved_outright_still_counts() -> None:
    assert pump.interval_work_wait({(1, 1): (0, 0)}, {(1, 1): (0, 500 * MS)}) == pytest.approx(500 * MS)


def test_own_queuing_is_not_a_disturbance_and_others_cpu_is() -> None:
    # 4 busy threads on 1 core, alone: each waited 75% of 10 s; nobody else used the core
    assert pump.disturbing_wait(7.5, outside_s=0.0, n_cores=1) == 0.0
    # one busy thread beside a hog on its core: half the time each
    assert pump.disturbing_wait(5.0, outside_s=5.0, n_cores=1) == pytest.approx(5.0)
    # one busy thread on 14 cores, a hog on one of them: the thread ran elsewhere and never waited
    assert pump.disturbing_wait(0.0, outside_s=10.0, n_cores=14) == 0.0
    # 28 busy threads on 14 cores and one hog: the hog's share of the slice is what it cost them
    assert pump.disturbing_wait(5.2, outside_s=14 / 29 * 10, n_cores=14) == pytest.approx(10 / 29)


def test_others_cpu_on_the_run_cores_is_busy_less_steal_less_the_run() -> None:
    before = {0: (100.0, 50.0, 0.0), 1: (200.0, 80.0, 1.0)}
    after = {0: (110.0, 50.0, 0.0), 1: (209.0, 81.0, 1.5)}
    assert pump.outside_cpu_s(before, after, [1], run_cpu_s=6.0) == pytest.approx(2.5)
    assert pump.outside_cpu_s(before, after, [1], run_cpu_s=20.0) == 0.0


def test_the_wait_reason_names_other_processes() -> None:
    assert WAIT_REASON in noise.disturbance(0.3, {}) and "other processes" in noise.disturbance(0.3, {})
    assert noise.disturbance(0.005, {}) == ""


# --- through pytest, on the GPU path ---------------------------------------------------------------------------

def _fake_nvidia_smi(bin_dir: Path, count: int) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "nvidia-smi"
    lines = "\n".join(f"GPU {i}: NVIDIA H200 (UUID: GPU-{i:08d}-standin)" for i in range(count))
    exe.write_text(f"#!/bin/sh\ncat <<'EOF'\n{lines}\nEOF\n")
    exe.chmod(0o755)
    return bin_dir


def _standin_suite(root: Path, burn_s: float) -> Path:
    suite = root / "gpu"
    (suite / "records").mkdir(parents=True)
    for k in (1, 2):
        (suite / "records" / f"record_{k}.py").write_text(STANDIN.format(burn_s=burn_s / k))
    ms = int(burn_s * 1000)
    (suite / "gpu01.toml").write_text(manifest("gpu01", "records/record_1.py", "records/record_2.py",
                                               reference="manifest", hints=False, t_start=ms, t_target=ms // 2))
    return suite


def _run_on_gpu_path(pytester: pytest.Pytester, cache_dir: Path, monkeypatch, tag: str) -> tuple[dict, dict]:
    """One session of the stand-in suite on stand-in GPUs: as many as there are run cores, so GPU 0's slice is
    exactly the first run core. Returns the item's record and its run's pump statistics."""
    n = len(run_cores())
    suite = _standin_suite(pytester.path / tag, burn_s=2.0)
    monkeypatch.setenv("PATH", f"{_fake_nvidia_smi(pytester.path / 'bin', n)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    results = pytester.path / f"results-{tag}"
    result = pytester.runpytest_subprocess(
        f"--speedrun-suite={suite}", "--speedrun-agent=baseline", f"--speedrun-cache-dir={cache_dir}",
        f"--speedrun-gpus={','.join(map(str, range(n)))}", f"--speedrun-results={results}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (record,) = [json.loads(ln) for ln in (results / "results.jsonl").read_text().splitlines()]
    (log,) = results.rglob("*.log")
    assert "launch 0 1 0\n" in log.read_text(), "not run by torchrun on stand-in GPU 0 with 1 thread"
    return record, json.loads(runner.cpu_stats_path(log).read_text())


def _share(stats: dict, key: str) -> float:
    return stats[key] / stats["wall_s"]


def test_a_run_whose_only_waits_are_its_own_threads_gets_no_wait_reason(
        pytester: pytest.Pytester, cache_dir: Path, monkeypatch) -> None:
    quiet = []
    for attempt in range(3):  # other work on this machine may land on the run's core: then the wait is real
        record, stats = _run_on_gpu_path(pytester, cache_dir, monkeypatch, f"own{attempt}")
        assert stats["run_cores"] == 1 and stats["threads"] >= 8
        assert _share(stats, "wait_all_s") > 0.10  # its own threads did queue: the old sum flagged this run
        # what is charged never exceeds what others took of the core
        assert stats["wait_s"] <= stats["outside_s"] / stats["run_cores"] + 1e-9
        if _share(stats, "outside_s") < noise.WAIT_LIMIT:  # a quiet core
            assert WAIT_REASON not in record["disturbed"], (record["disturbed"], stats)
            quiet.append(stats)
            break
    if not quiet:
        pytest.skip(f"the run's core was busy with other processes in every attempt "
                    f"(others' share {_share(stats, 'outside_s'):.1%}); the no-reason case needs a quiet core")


def test_a_run_that_shares_its_core_with_a_busy_process_gets_the_wait_reason(
        pytester: pytest.Pytester, cache_dir: Path, monkeypatch) -> None:
    core = run_cores()[0]  # GPU 0's slice (see _run_on_gpu_path)
    hog = subprocess.Popen([sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True: pass"],
                           start_new_session=True)
    try:
        time.sleep(0.2)
        record, stats = _run_on_gpu_path(pytester, cache_dir, monkeypatch, "hog")
    finally:
        hog.kill()
        hog.wait()
    assert _share(stats, "outside_s") > 0.2, stats  # the hog held the core (about half of it)
    assert _share(stats, "wait_s") > 10 * noise.WAIT_LIMIT, stats
    assert WAIT_REASON in record["disturbed"], (record["disturbed"], stats)
