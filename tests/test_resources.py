"""GPU discovery, the lease pool, and how items and fixtures use them (fake nvidia-smi on PATH)."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from fakes import manifest
from pytest_speedrun.errors import MissingInput, UsageError
from pytest_speedrun.execution.resources import (
    FAKE_CORES_ENV,
    NODE_SLOT_ENV,
    LeasePool,
    cpu_threads,
    discover_gpus,
    node_slot_lease,
    node_timing_slot,
    reserved_count,
    run_cores,
)

pytest_plugins = ["pytester"]


def fake_nvidia_smi(bin_dir: Path, count: int) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "nvidia-smi"
    lines = "\n".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08d}-fake)" for i in range(count))
    exe.write_text(f"#!/bin/sh\ncat <<'EOF'\n{lines}\nEOF\n")
    exe.chmod(0o755)
    return bin_dir


def test_discovery_prefers_override_then_cuda_visible_devices_then_nvidia_smi(tmp_path: Path) -> None:
    bin_dir = fake_nvidia_smi(tmp_path / "bin", 3)
    path = f"{bin_dir}:{os.environ['PATH']}"
    assert discover_gpus("4,5", env={"PATH": path}) == ["4", "5"]
    assert discover_gpus(env={"PATH": path, "CUDA_VISIBLE_DEVICES": "3,5,6"}) == ["3", "5", "6"]
    assert discover_gpus(env={"PATH": path, "CUDA_VISIBLE_DEVICES": ""}) == []
    assert discover_gpus(env={"PATH": path}) == ["GPU-00000000-fake", "GPU-00000001-fake", "GPU-00000002-fake"]
    assert discover_gpus(env={"PATH": str(tmp_path / "empty")}) == []


def test_gpu_leases_are_disjoint_all_or_nothing_and_released(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path / "pool", gpus=["a", "b", "c"], cores=[0, 1])
    first = pool.try_acquire(2, 1)
    assert first is not None and first.gpus == ("a", "b") and first.cores == (0, 1)  # each GPU's own core
    assert pool.try_acquire(2, 1) is None  # only one GPU left: nothing is taken
    other = LeasePool(tmp_path / "pool", gpus=["a", "b", "c"], cores=[0, 1])  # another worker, same pool
    second = other.try_acquire(1, 1)
    assert second is not None and second.gpus == ("c",)
    pool.release(first)
    assert other.try_acquire(2, 0) is not None


def test_gpu_runs_share_cores_when_there_are_fewer_cores_than_gpus(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path / "pool", gpus=[str(g) for g in range(8)], cores=[0, 1])
    leases = [pool.try_acquire(1, 1) for _ in range(8)]
    assert all(lease is not None for lease in leases)  # 8 runs at once on 8 GPUs, though only 2 cores
    assert {lease.cores for lease in leases} == {(0,), (1,)}


def test_cpu_only_leases_hold_their_cores(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path / "pool", gpus=[], cores=[0, 1])
    first = pool.try_acquire(0, 1)
    second = pool.try_acquire(0, 1)
    assert first is not None and second is not None and set(first.cores).isdisjoint(second.cores)
    assert pool.try_acquire(0, 1) is None
    pool.release(first)
    assert pool.try_acquire(0, 1) is not None


def test_leases_of_dead_processes_are_reclaimed(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path / "pool", gpus=["a"], cores=[0])
    (tmp_path / "pool" / "pool.json").write_text(json.dumps({"gpus": {"a": "999999999:1"}, "cores": {}}))
    assert pool.try_acquire(1, 0) is not None


def test_asking_for_more_gpus_than_exist_is_a_skip_with_the_numbers(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path / "pool", gpus=["a"], cores=[0])
    with pytest.raises(MissingInput, match=r"needs 2 GPU\(s\), this machine offers 1 \(a\)"):
        with pool.lease(2, 1):
            pass


def test_lease_env_sets_devices_threads_and_per_lease_caches(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path / "pool", gpus=["GPU-1", "GPU-2"], cores=[0, 1])
    with pool.lease(2, 2) as lease:
        env = lease.env(tmp_path / "cc")
    # Each of the run's two processes feeds one GPU from that GPU's core: one thread each, not two.
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-1,GPU-2" and env["OMP_NUM_THREADS"] == "1"
    assert env["TORCHINDUCTOR_CACHE_DIR"].endswith("inductor/GPU-1-GPU-2")
    assert env["TRITON_CACHE_DIR"].endswith("triton/GPU-1-GPU-2")


def test_a_timed_cpu_run_gets_one_thread_unless_the_threads_option_says_otherwise(monkeypatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")  # no longer divides the cores among workers
    assert cpu_threads() == 1
    assert cpu_threads(override=3) == 3


def test_runs_leave_cores_to_the_controller_and_the_os() -> None:
    assert [reserved_count(n) for n in (1, 2, 4, 8, 16, 64)] == [0, 1, 1, 1, 2, 8]
    assert run_cores([0, 1]) == [1]  # the 2-core machine: runs on core 1, pytest and the OS on core 0
    assert run_cores([0]) == [0]
    assert run_cores(list(range(16))) == list(range(2, 16))


def test_gpu_runs_get_disjoint_pinned_cores_per_gpu(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path / "pool", gpus=[str(g) for g in range(4)], cores=list(range(2, 10)))
    a, b = pool.try_acquire(2, 0), pool.try_acquire(1, 0)
    assert a is not None and b is not None
    assert a.cores == (2, 3, 4, 5) and b.cores == (6, 7) and a.threads == b.threads == 2


def test_a_lease_that_queued_says_how_long(tmp_path: Path) -> None:
    import threading

    pool = LeasePool(tmp_path / "pool", gpus=[], cores=[1], poll_s=0.01)
    first = pool.try_acquire(0, 1)
    assert first is not None
    threading.Timer(0.3, pool.release, args=(first,)).start()
    with pool.lease(0, 1) as second:
        assert second.waited_s >= 0.25
    with pool.lease(0, 1) as third:
        assert third.waited_s == 0.0


# --- the host's timing slot ------------------------------------------------------------------------------

def test_a_timed_cpu_run_holds_the_hosts_only_timing_slot_and_an_agent_holds_cores_alone(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path / "pool", gpus=[], cores=[0, 1, 2, 3])
    worker = LeasePool(tmp_path / "pool", gpus=[], cores=[0, 1, 2, 3])  # another xdist worker or session
    first = pool.try_acquire(0, 1, timed=True)
    assert first is not None and first.timed
    assert worker.try_acquire(0, 1, timed=True) is None  # free cores, but the slot is held
    agent = worker.try_acquire(0, 1)  # a command agent's lease: cores, no slot
    assert agent is not None and not agent.timed and set(agent.cores).isdisjoint(first.cores)
    pool.release(first)
    second = worker.try_acquire(0, 1, timed=True)
    assert second is not None and set(second.cores).isdisjoint(agent.cores)


def test_timed_runs_n_lets_n_timed_runs_run_at_once(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path / "pool", gpus=[], cores=[0, 1, 2, 3], timed_runs=3)
    held = [pool.try_acquire(0, 1, timed=True) for _ in range(3)]
    assert all(lease is not None for lease in held)
    assert pool.try_acquire(0, 1, timed=True) is None and pool.try_acquire(0, 1) is not None


def test_gpu_runs_hold_their_gpus_and_no_timing_slot(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path / "pool", gpus=["a", "b"], cores=[0, 1, 2, 3])
    gpu = pool.try_acquire(1, 0, timed=True)
    assert gpu is not None and not gpu.timed
    cpu = pool.try_acquire(0, 1, timed=True)  # the slot is still free for a timed CPU run
    assert cpu is not None and cpu.timed


def test_a_dead_processs_timing_slot_is_reclaimed(tmp_path: Path) -> None:
    pool = LeasePool(tmp_path / "pool", gpus=[], cores=[0])
    (tmp_path / "pool" / "pool.json").write_text(json.dumps({"gpus": {}, "cores": {}, "timed": ["999999999:1"]}))
    assert pool.try_acquire(0, 1, timed=True) is not None


def test_a_run_that_queued_for_the_slot_says_how_long_and_why(tmp_path: Path) -> None:
    import threading

    pool = LeasePool(tmp_path / "pool", gpus=[], cores=[0, 1], poll_s=0.01)
    first = pool.try_acquire(0, 1, timed=True)
    assert first is not None
    heard: list[str] = []
    threading.Timer(0.3, pool.release, args=(first,)).start()
    with pool.lease(0, 1, who="mini01", on_wait=heard.append, timed=True) as second:
        assert second.waited_s >= 0.25
    assert heard == ["mini01 waiting for 0 GPU(s) and 1 core(s) and the host's timing slot (1 timed run(s) at once)"]


def test_the_fake_run_cores_seam_gives_n_cores_and_pins_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(FAKE_CORES_ENV, "3")
    assert run_cores() == [0, 1, 2]
    assert run_cores([0, 1]) == [1]  # explicit cores are never faked
    pool = LeasePool(tmp_path / "pool", gpus=[], cores=run_cores(), pin=False)
    with pool.lease(0, 1) as a, pool.lease(0, 1) as b:
        assert a.cores == b.cores == ()  # no affinity for cores this machine may not have
        assert pool.try_acquire(0, 2) is None  # but the pool still counts them: one fake core is left
    monkeypatch.setenv(FAKE_CORES_ENV, "many")
    with pytest.raises(UsageError, match=f"{FAKE_CORES_ENV}=many: expected a positive number"):
        run_cores()


def test_a_slurm_cpu_job_takes_a_timing_slot_on_its_node(tmp_path: Path, monkeypatch) -> None:
    """The node's side of a Slurm run (slurm._job): the slot comes from the node's machine-wide pool, and the
    variable that asks for it never reaches the command."""
    import threading
    import time

    monkeypatch.setenv("SPEEDRUN_LEASE_DIR", str(tmp_path / "node-pool"))
    with node_slot_lease(1) as lease:
        env = {"PATH": "/bin", **lease.env()}
    assert env[NODE_SLOT_ENV] == "1"
    spans: list[tuple[float, float, float]] = []

    def job() -> None:
        job_env = dict(env)
        with node_timing_slot(job_env, poll_s=0.01) as waited:
            assert NODE_SLOT_ENV not in job_env
            start = time.monotonic()
            time.sleep(0.2)
            spans.append((start, time.monotonic(), waited))

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a_start, a_end, _), (b_start, b_end, b_waited) = sorted(spans)
    assert a_end <= b_start and b_waited > 0  # one after the other, and the second says it waited
    plain = {"PATH": "/bin"}
    with node_timing_slot(plain) as waited:  # a GPU job (no variable): no slot, no wait
        assert waited == 0.0 and plain == {"PATH": "/bin"}


# --- tiny tasks on a GPU host ------------------------------------------------------------------------------

def _tiny_task(tmp_path: Path):
    from fakes import write_suite
    from pytest_speedrun.tasks.manifest import load_task

    return load_task(write_suite(tmp_path / "s") / "mini01.toml")


def _session(tmp_path: Path, gpus: str | None):
    from pytest_speedrun.pipeline.session import SessionInfo, SpeedrunSession
    from pytest_speedrun.settings import build_settings

    settings = build_settings(agent=None, suites=[], hints="0", seeds=1, min_fsr=None, calibrate=False,
                              calibration_runs=1, results_dir=tmp_path / "r", cache_dir=tmp_path / "c",
                              timeout_s=None, agent_timeout_s=60, threads=None, python=None, data_dir=None, gpus=gpus)
    return SpeedrunSession(settings, None, SessionInfo.create(gpus))


def test_tiny_tasks_stay_on_the_cpu_where_gpus_were_only_found(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPEEDRUN_LEASE_DIR", str(tmp_path / "leases"))
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path / 'bin', 2)}:{os.environ['PATH']}")
    task = _tiny_task(tmp_path)
    for visible in (None, "0,1"):  # found by nvidia-smi, then named by CUDA_VISIBLE_DEVICES
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        session = _session(tmp_path, None)
        assert len(session.info.gpus) == 2  # the session sees the GPUs (GPU tasks still use them)
        assert session.needs(task) == (0, 1)  # a tiny task does not: the CPU, one thread
        assert dict(session.timing(0)) == {"device": "cpu"}  # its references are kept apart from GPU-timed ones
        session.close()
    chosen = _session(tmp_path, "1")
    assert chosen.needs(task) == (1, 1) and chosen.timing(1) == ()
    chosen.close()


# --- through pytest ---------------------------------------------------------------------------------------

RECORDING = '''\
import json, os, sys, time
if os.environ.get("RANK", "0") != "0":
    sys.exit(0)
start = time.time()
time.sleep({sleep})
with open(os.environ["RECORD_FILE"], "a") as f:
    f.write(json.dumps({{"cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "omp": os.environ.get("OMP_NUM_THREADS"),
                        "cpus": sorted(os.sched_getaffinity(0)), "start": start, "end": time.time()}}) + "\\n")
print("step:1/1 train_loss:2.0 train_time:{ms}ms step_avg:{ms}ms")
print("step:1/1 val_loss:1.9500 train_time:{ms}ms step_avg:{ms}ms")
'''


def gpu_suite(root: Path, tasks: int, nproc: int, record_file: Path, sleep: float = 0.5) -> Path:
    suite = root / "gpu"
    (suite / "records").mkdir(parents=True)
    ms = int(sleep * 900)  # below the wall time, as a real record's train_time is
    for k in (1, 2):
        (suite / "records" / f"record_{k}.py").write_text(RECORDING.format(sleep=sleep / k, ms=ms // k))
    for i in range(tasks):
        text = manifest(f"gpu{i:02d}", "records/record_1.py", "records/record_2.py", reference="manifest",
                        hints=False, t_start=ms, t_target=ms // 2)
        text = text.replace("nproc_per_node = 1", f"nproc_per_node = {nproc}\nsupported_gpu_counts = [{nproc}]")
        text = text.replace('env = { NANOGPT_VAL_TOKENS = "4096" }',
                            f'env = {{ NANOGPT_VAL_TOKENS = "4096", RECORD_FILE = "{record_file}" }}')
        (suite / f"gpu{i:02d}.toml").write_text(text)
    return suite


def _runs(record_file: Path) -> list[dict]:
    return [json.loads(ln) for ln in record_file.read_text().splitlines()]


@pytest.mark.slow
def test_parallel_items_never_share_a_gpu(pytester: pytest.Pytester, cache_dir: Path, monkeypatch) -> None:
    record = pytester.path / "runs.jsonl"
    suite = gpu_suite(pytester.path, tasks=4, nproc=2, record_file=record, sleep=1.0)
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(pytester.path / 'bin', 4)}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=baseline",
                                           f"--speedrun-cache-dir={cache_dir}", "-n", "4", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    runs = _runs(record)
    assert len(runs) == 4 and all(len(r["cvd"].split(",")) == 2 for r in runs)
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            overlap = a["start"] < b["end"] and b["start"] < a["end"]
            assert not (overlap and set(a["cvd"].split(",")) & set(b["cvd"].split(","))), (a, b)


def test_user_cuda_visible_devices_are_respected(pytester: pytest.Pytester, cache_dir: Path, monkeypatch) -> None:
    record = pytester.path / "runs.jsonl"
    suite = gpu_suite(pytester.path, tasks=2, nproc=1, record_file=record, sleep=0.1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6")
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=baseline",
                                           f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert {r["cvd"] for r in _runs(record)} <= {"3", "5", "6"}


def test_too_few_gpus_skip_with_the_numbers(pytester: pytest.Pytester, cache_dir: Path, monkeypatch) -> None:
    suite = gpu_suite(pytester.path, tasks=1, nproc=2, record_file=pytester.path / "r.jsonl")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=baseline",
                                           f"--speedrun-cache-dir={cache_dir}", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*task gpu00 needs 2 GPU(s), this machine offers 1*"])


def test_unsupported_nproc_skips(pytester: pytest.Pytester, cache_dir: Path, monkeypatch) -> None:
    suite = gpu_suite(pytester.path, tasks=1, nproc=2, record_file=pytester.path / "r.jsonl")
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=baseline", "-rs",
                                           "--speedrun-nproc=1", f"--speedrun-cache-dir={cache_dir}")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*task gpu00 supports 2 GPU(s), not 1*"])


def test_cpu_runs_under_xdist_get_disjoint_cores(pytester: pytest.Pytester, cache_dir: Path, monkeypatch) -> None:
    record = pytester.path / "runs.jsonl"
    suite = gpu_suite(pytester.path, tasks=2, nproc=1, record_file=record, sleep=1.0)
    for m in suite.glob("*.toml"):
        m.write_text(m.read_text().replace("supported_gpu_counts = [1]\n", ""))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=baseline", "-n", "2",
                                           f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    runs = _runs(record)
    cores = len(os.sched_getaffinity(0))
    assert all(r["omp"] == "1" for r in runs)  # one pinned thread per timed CPU run
    if cores >= 2:
        overlapping = runs[0]["start"] < runs[1]["end"] and runs[1]["start"] < runs[0]["end"]
        assert not (overlapping and set(runs[0]["cpus"]) & set(runs[1]["cpus"]))


def test_fixtures_lease_gpus_and_run_scripts(pytester: pytest.Pytester, cache_dir: Path, monkeypatch) -> None:
    from fakes import fake_record

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7,8")
    (pytester.path / "candidate.py").write_text(fake_record(0.1, loss=3.1))
    pytester.makepyfile(textwrap.dedent('''
        import pytest

        @pytest.mark.speedrun_gpus(2)
        def test_two(speedrun_gpus):
            assert sorted(speedrun_gpus.gpus) == ["7", "8"]

        @pytest.mark.speedrun_gpus(3)
        def test_three(speedrun_gpus):
            pass

        def test_candidate_reaches_target(speedrun_run):
            ex = speedrun_run("candidate.py", target_val_loss=3.28)
            assert ex.verdict.passed, ex.verdict.reasons
            assert ex.metrics.val_loss == 3.1

        def test_candidate_misses_a_lower_target(speedrun_run):
            ex = speedrun_run("candidate.py", target_val_loss=3.0)
            assert ex.verdict.status == "invalid"
    '''))
    result = pytester.runpytest_subprocess(f"--speedrun-cache-dir={cache_dir}", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["*needs 3 GPU(s), this machine offers 2*"])


def test_every_session_on_the_machine_leases_from_one_pool(tmp_path: Path, monkeypatch) -> None:
    """Two pytest sessions at once (two terminals, a test suite and a benchmark) never pin runs to one core."""
    from pytest_speedrun.pipeline.session import SessionInfo, SpeedrunSession
    from pytest_speedrun.settings import build_settings

    monkeypatch.setenv("SPEEDRUN_LEASE_DIR", str(tmp_path / "leases"))
    settings = build_settings(agent=None, suites=[], hints="0", seeds=1, min_fsr=None, calibrate=False,
                              calibration_runs=1, results_dir=tmp_path / "r", cache_dir=tmp_path / "c", timeout_s=None,
                              agent_timeout_s=60, threads=None, python=None, data_dir=None)
    one, two = (SpeedrunSession(settings, None, SessionInfo.create(None)) for _ in range(2))
    assert one.pool.directory == two.pool.directory == tmp_path / "leases"
    held = one.pool.try_acquire(0, len(one.pool.cores))
    assert held is not None and two.pool.try_acquire(0, 1) is None
    one.close()
    assert two.pool.try_acquire(0, 1) is not None
    two.close()


def test_the_test_run_takes_its_leases_from_a_pool_of_its_own() -> None:
    """conftest's own_lease_pool: no test waits behind a session that runs beside the test run on this host."""
    import tempfile

    from pytest_speedrun.execution.resources import machine_pool_dir

    host = Path(tempfile.gettempdir()) / f"pytest-speedrun-leases-{os.getuid()}"
    assert machine_pool_dir() != host and machine_pool_dir().is_dir()
