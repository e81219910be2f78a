"""The Slurm launcher against a real single-node Slurm cluster started here (skipped where it cannot start)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import slurmcluster

from fakes import scored_from_times, write_suite
from pytest_speedrun.execution.runner import RunSpec
from pytest_speedrun.execution.slurm import _JobSlots, outcome_for_state, parse_extra
from pytest_speedrun.tasks.manifest import find_suite, load_task

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """slurmctld + slurmd (Debian's slurm-wlm) with munge, one node with this machine's CPUs, on free ports."""
    why = slurmcluster.unavailable()
    if why:
        pytest.skip(why)
    try:
        env = slurmcluster.start(tmp_path_factory.mktemp("slurm"), gpus=2)  # count-only stand-ins for GPUs
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield env
    slurmcluster.stop(env)


def _queue(env: dict) -> str:
    return slurmcluster.queue(env)


def _manifest_times(suite: Path) -> Path:
    """Use the manifests' reference times (no calibration jobs before the item's own)."""
    for manifest in suite.glob("*.toml"):
        manifest.write_text(manifest.read_text().replace('source = "calibrate"', 'source = "manifest"'))
    return suite


def _start_pytest(spawn, pytester: pytest.Pytester, env: dict, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", f"--rootdir={pytester.path}"]
    return spawn(cmd, cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_running(env: dict, timeout_s: float = 60) -> str:
    """The id of the first job that Slurm runs, once it runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = [line.split()[0] for line in _queue(env).splitlines() if line.split()[1:] == ["R"]]
        if running:
            return running[0]
        time.sleep(0.3)
    raise AssertionError(f"no job started within {timeout_s} s; queue: {_queue(env)!r}")


def test_a_task_runs_as_a_slurm_job_with_the_same_checks(pytester: pytest.Pytester, slurm_cluster: dict,
                                                         cache_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_CONF", slurm_cluster["SLURM_CONF"])
    suite = write_suite(pytester.path / "suites")
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=oracle", "-k", "mini01",
                                           "--speedrun-launcher=slurm", "--speedrun-slurm-partition=debug",
                                           f"--speedrun-cache-dir={cache_dir / 'slurm'}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (record,) = [json.loads(ln) for ln in (pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()]
    assert record["slurm_job_id"] and record["slurm_node"] and record["fsr"] is not None
    art = Path(record["artifact_dir"])
    assert "step:10/10 val_loss" in (art / "run.log").read_text()
    assert json.loads((art / "run.slurm.json").read_text())["job_id"] == record["slurm_job_id"]


@pytest.mark.slow
def test_a_tiny_task_runs_end_to_end_as_slurm_jobs(pytester: pytest.Pytester, slurm_cluster: dict, cache_dir: Path,
                                                  monkeypatch) -> None:
    """A real tiny record (torch, the generated corpus) trained in a Slurm job; the calibration runs of t_i and
    t_i+1 are Slurm jobs too (the cache is shared with the other tiny tests, which then reuse them)."""
    monkeypatch.setenv("SLURM_CONF", slurm_cluster["SLURM_CONF"])
    result = pytester.runpytest_subprocess("--speedrun-suite=tiny", "--speedrun-agent=oracle", "-k", "tiny04",
                                           "--speedrun-launcher=slurm", f"--speedrun-cache-dir={cache_dir}",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["item*slurm job", "tiny04[[]h0-s0[]]*passed*@*"])
    (record,) = [json.loads(ln) for ln in (pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()]
    assert record["slurm_job_id"] and scored_from_times([record]) == []
    target = load_task(find_suite("tiny") / "tiny04.toml").target.script.path.read_text()
    assert Path(record["artifact_dir"], "solution.py").read_text() == target
    job = json.loads((Path(record["artifact_dir"]) / "run.slurm.json").read_text())
    assert job["state"] == "COMPLETED" and job["latency_s"] >= 0


def test_a_gpu_task_gets_its_gpus_from_slurm_not_from_the_machine_running_pytest(
        pytester: pytest.Pytester, slurm_cluster: dict, cache_dir: Path, monkeypatch) -> None:
    """The real benchmark's tasks require GPUs. pytest runs on a login node without any (no nvidia-smi here):
    the item still runs, as a job asking Slurm for the GPUs, and the script sees the GPUs Slurm assigned."""
    monkeypatch.setenv("SLURM_CONF", slurm_cluster["SLURM_CONF"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    suite = _manifest_times(write_suite(pytester.path / "suites"))
    manifest = suite / "mini01.toml"
    manifest.write_text(manifest.read_text().replace("nproc_per_node = 1",
                                                     "nproc_per_node = 1\nsupported_gpu_counts = [1]"))
    show = ('command:sed -i "1i import os; print(\'gpus:\', os.environ.get(\'CUDA_VISIBLE_DEVICES\'))" '
            '"$SPEEDRUN_SCRIPT"')
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", f"--speedrun-agent={show}", "-k", "mini01",
                                           "--speedrun-launcher=slurm", f"--speedrun-cache-dir={cache_dir / 'slurm'}",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (record,) = [json.loads(ln) for ln in (pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()]
    assert "gpus: 0\n" in Path(record["log_path"]).read_text()  # Slurm's assignment, not the controller's
    (submission,) = (pytester.path / ".speedrun").glob("*/slurm/*_submission.sh")
    assert "#SBATCH --gpus-per-node=1" in submission.read_text()


def test_two_items_run_as_two_slurm_jobs_under_xdist(pytester: pytest.Pytester, slurm_cluster: dict,
                                                     cache_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_CONF", slurm_cluster["SLURM_CONF"])
    suite = _manifest_times(write_suite(pytester.path / "suites", works=(2.0, 1.0, 0.5)))
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=baseline", "-n", "2",
                                           "--speedrun-launcher=slurm", "--speedrun-max-jobs=2",
                                           f"--speedrun-cache-dir={cache_dir / 'slurm'}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["item*slurm job", "mini01[[]h0-s0[]]*passed*@*", "mini02[[]h0-s0[]]*passed*@*"])
    jobs = [json.loads(p.read_text()) for p in (pytester.path / ".speedrun").glob("*/*/run.slurm.json")]
    assert len({j["job_id"] for j in jobs}) == 2 and all(j["state"] == "COMPLETED" for j in jobs)
    assert all(j["latency_s"] >= 0 for j in jobs)


def test_a_run_over_its_timeout_ends_as_timeout(pytester: pytest.Pytester, slurm_cluster: dict, cache_dir: Path,
                                                monkeypatch) -> None:
    monkeypatch.setenv("SLURM_CONF", slurm_cluster["SLURM_CONF"])
    suite = _manifest_times(write_suite(pytester.path / "suites"))
    hang = 'command:sed -i "1i import time; time.sleep(600)" "$SPEEDRUN_SCRIPT"'
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", f"--speedrun-agent={hang}", "-k", "mini01",
                                           "--speedrun-launcher=slurm", "--speedrun-timeout=3",
                                           f"--speedrun-cache-dir={cache_dir / 'slurm'}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*status timeout*"])
    assert _queue(slurm_cluster) == ""


def test_an_item_timeout_cancels_its_job(pytester: pytest.Pytester, slurm_cluster: dict, cache_dir: Path,
                                         monkeypatch) -> None:
    """pytest-timeout (--timeout) ends the item while its job runs: the job is scancelled, not left behind."""
    monkeypatch.setenv("SLURM_CONF", slurm_cluster["SLURM_CONF"])
    suite = _manifest_times(write_suite(pytester.path / "suites"))
    hang = 'command:sed -i "1i import time; time.sleep(600)" "$SPEEDRUN_SCRIPT"'
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", f"--speedrun-agent={hang}", "-k", "mini01",
                                           "--speedrun-launcher=slurm", "--timeout=8",
                                           f"--speedrun-cache-dir={cache_dir / 'slurm'}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Timeout*"])
    deadline = time.monotonic() + 30
    while _queue(slurm_cluster) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _queue(slurm_cluster) == ""


def test_interrupting_pytest_cancels_the_job(spawn, pytester: pytest.Pytester, slurm_cluster: dict,
                                             cache_dir: Path) -> None:
    suite = _manifest_times(write_suite(pytester.path / "suites"))
    hang = 'command:sed -i "1i import time; time.sleep(600)" "$SPEEDRUN_SCRIPT"'
    proc = _start_pytest(spawn, pytester, slurm_cluster, f"--speedrun-suite={suite}", f"--speedrun-agent={hang}", "-k",
                         "mini01", "--speedrun-launcher=slurm", f"--speedrun-cache-dir={cache_dir / 'slurm'}")
    _wait_running(slurm_cluster)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while _queue(slurm_cluster) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _queue(slurm_cluster) == ""


def test_a_job_cancelled_outside_pytest_is_a_crash_naming_the_state(spawn, pytester: pytest.Pytester,
                                                                    slurm_cluster: dict, cache_dir: Path) -> None:
    suite = _manifest_times(write_suite(pytester.path / "suites"))
    hang = 'command:sed -i "1i import time; time.sleep(600)" "$SPEEDRUN_SCRIPT"'
    proc = _start_pytest(spawn, pytester, slurm_cluster, f"--speedrun-suite={suite}", f"--speedrun-agent={hang}", "-k",
                         "mini01", "--speedrun-launcher=slurm", f"--speedrun-cache-dir={cache_dir / 'slurm'}")
    job_id = _wait_running(slurm_cluster)
    subprocess.run(["scancel", job_id], env=slurm_cluster, check=True)  # an admin, a node failure, a preemption
    out, _ = proc.communicate(timeout=120)  # this cluster has no accounting: slurmctld tells the state
    assert proc.returncode == 1, out
    assert "status crashed" in out and "Slurm state CANCELLED" in out, out


def test_resume_reattaches_to_the_job_an_interrupted_session_left_running(
        spawn, pytester: pytest.Pytester, slurm_cluster: dict, cache_dir: Path) -> None:
    suite = _manifest_times(write_suite(pytester.path / "suites", works=(12.0, 6.0)))
    args = (f"--speedrun-suite={suite}", "--speedrun-agent=baseline", "--speedrun-launcher=slurm",
            f"--speedrun-cache-dir={cache_dir / 'slurm'}")
    first = _start_pytest(spawn, pytester, slurm_cluster, *args)
    job_id = _wait_running(slurm_cluster)
    first.kill()  # SIGKILL: no cleanup at all, like a lost login node; the job keeps running
    first.communicate(timeout=30)
    assert _queue(slurm_cluster) == f"{job_id} R"

    # the same command and environment again, resuming (HOME, PATH, ... are part of the job's identity)
    out, _ = _start_pytest(spawn, pytester, slurm_cluster, *args, "--speedrun-resume").communicate(timeout=120)
    pytest.LineMatcher(out.splitlines()).fnmatch_lines([f"mini01[[]h0-s0[]]*passed*{job_id}@* (re-attached)",
                                                        "*1 passed*"])
    records = [json.loads(ln) for ln in (pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()]
    assert [(r["status"], r["slurm_job_id"], r["slurm_reattached"]) for r in records] == [("passed", job_id, True)]
    art = Path(records[0]["artifact_dir"])
    assert "step:10/10 val_loss" in (art / "run.log").read_text()
    assert json.loads((art / "run.slurm.json").read_text())["reattached_from_session"] not in ("", None)
    submitted = list((pytester.path / ".speedrun").glob("*/slurm/*_submitted.pkl"))
    assert len(submitted) == 1, submitted  # one submission in all: the resumed session submitted nothing
    assert _queue(slurm_cluster) == "" and not list((pytester.path / ".speedrun" / "slurm-jobs").glob("*/*.json"))


def test_resume_without_a_live_job_submits_afresh(spawn, pytester: pytest.Pytester, slurm_cluster: dict,
                                                  cache_dir: Path) -> None:
    """An orphaned job that ended without a result (cancelled, failed, forgotten by Slurm) is not reported as
    this session's crash: the work is submitted afresh. The first job's run waits while a hold file exists, so it
    cannot finish (and leave a result to adopt) before it is cancelled, however slowly the machine runs."""
    suite = _manifest_times(write_suite(pytester.path / "suites", works=(6.0, 3.0)))
    hold = pytester.path / "hold"
    hold.touch()
    start = suite / "records" / "record_1.py"
    start.write_text(f"import os, time\nwhile os.path.exists({str(hold)!r}):\n    time.sleep(0.2)\n"
                     + start.read_text())
    args = (f"--speedrun-suite={suite}", "--speedrun-agent=baseline", "--speedrun-launcher=slurm",
            f"--speedrun-cache-dir={cache_dir / 'slurm'}", "--speedrun-sandbox=none")
    first = _start_pytest(spawn, pytester, slurm_cluster, *args)
    job_id = _wait_running(slurm_cluster)
    first.kill()
    first.communicate(timeout=30)
    subprocess.run(["scancel", job_id], env=slurm_cluster, check=True)
    hold.unlink()
    out, _ = _start_pytest(spawn, pytester, slurm_cluster, *args, "--speedrun-resume").communicate(timeout=120)
    pytest.LineMatcher(out.splitlines()).fnmatch_lines(["*= 1 passed in *"])
    (record,) = [json.loads(ln) for ln in (pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()]
    assert record["slurm_job_id"] != job_id and record["slurm_reattached"] is False


def _spec(tmp_path: Path) -> RunSpec:
    return RunSpec(script=tmp_path / "t.py", workdir=tmp_path, log_path=tmp_path / "run.log", env={}, timeout_s=60)


@pytest.mark.parametrize(("state", "timed_out", "reason"), [
    ("TIMEOUT", True, "Slurm state TIMEOUT"), ("OUT_OF_MEMORY", False, "Slurm state OUT_OF_MEMORY"),
    ("NODE_FAIL", False, "Slurm state NODE_FAIL"), ("CANCELLED", False, "Slurm state CANCELLED"),
    ("PREEMPTED", False, "Slurm state PREEMPTED"),
])
def test_slurm_states_map_to_our_statuses(tmp_path: Path, state: str, timed_out: bool, reason: str) -> None:
    from pytest_speedrun.judging.integrity import judge

    outcome = outcome_for_state(state, None, _spec(tmp_path), ["python"], "42", 1.0)
    assert outcome.timed_out is timed_out and outcome.reason == reason and outcome.job_id == "42"
    verdict = judge(outcome, None, "no line", 2.0, 60)
    assert verdict.status == ("timeout" if timed_out else "crashed") and reason in verdict.reasons[0]


def test_completed_jobs_report_the_commands_own_exit(tmp_path: Path) -> None:
    result = {"exit_code": 3, "wall_s": 2.5, "timed_out": False, "node": "gpu-node-7"}
    outcome = outcome_for_state("COMPLETED", result, _spec(tmp_path), ["python"], "43", 9.0)
    assert (outcome.exit_code, outcome.wall_s, outcome.node) == (3, 2.5, "gpu-node-7")


def test_max_jobs_caps_jobs_in_flight_across_processes(tmp_path: Path) -> None:
    slots = _JobSlots(tmp_path / "slots", limit=1)
    slots.acquire("a", 0.05)
    got = threading.Event()
    thread = threading.Thread(target=lambda: (slots.acquire("b", 0.05), got.set()), daemon=True)
    thread.start()
    assert not got.wait(0.5)  # the second job waits for the first
    slots.release("a")
    assert got.wait(5)


def test_extra_sbatch_options_must_be_key_value() -> None:
    from pytest_speedrun.errors import UsageError

    assert parse_extra(["constraint=h100", "--exclusive="]) == {"constraint": "h100", "exclusive": ""}
    with pytest.raises(UsageError, match="not key=value"):
        parse_extra(["constraint"])


def test_jobs_ask_for_the_cpus_their_threads_use(tmp_path: Path) -> None:
    from pytest_speedrun.execution.slurm import SlurmConfig, SlurmLauncher

    pytest.importorskip("submitit")
    spec = RunSpec(script=tmp_path / "t.py", workdir=tmp_path, log_path=tmp_path / "run.log", timeout_s=60,
                   env={"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": "0"})
    planned = SlurmLauncher(SlurmConfig(folder=tmp_path / "jobs"), tmp_path / "slots")
    assert planned._cpus(spec) == 4
    env = planned._job_env(spec)
    assert env["OMP_NUM_THREADS"] == "4" and "CUDA_VISIBLE_DEVICES" not in env  # Slurm assigns the GPUs
    configured = SlurmLauncher(SlurmConfig(folder=tmp_path / "jobs", cpus_per_task=16), tmp_path / "slots")
    assert configured._cpus(spec) == 16
    assert {configured._job_env(spec)[v] for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")} == {"16"}


def test_the_node_supplies_paths_gpus_and_its_slurm_view_the_controller_the_contract() -> None:
    from pytest_speedrun.execution.slurm import node_env

    controller = {"PATH": "/login/bin", "NANOGPT_TRAIN_FILES": "/shared/train_*.bin", "OMP_NUM_THREADS": "8",
                  "SLURM_JOB_ID": "77", "TORCH_LOGS": "recompiles", "HOME": "/home/u"}
    node = {"PATH": "/opt/cuda/bin:/usr/bin", "CUDA_VISIBLE_DEVICES": "2,3", "SLURM_JOB_ID": "901",
            "SLURM_PROCID": "0", "NANOGPT_TRAIN_FILES": "/elsewhere", "SECRET_TOKEN": "x"}
    assert node_env(controller, node) == {
        "PATH": "/opt/cuda/bin:/usr/bin", "CUDA_VISIBLE_DEVICES": "2,3", "SLURM_JOB_ID": "901", "SLURM_PROCID": "0",
        "NANOGPT_TRAIN_FILES": "/shared/train_*.bin", "OMP_NUM_THREADS": "8", "TORCH_LOGS": "recompiles",
        "HOME": "/home/u",
    }
