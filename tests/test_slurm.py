"""The Slurm launcher against a real single-node Slurm cluster started here (skipped where it cannot start)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fakes import write_suite
from pytest_speedrun.runner import RunSpec
from pytest_speedrun.slurm import _JobSlots, outcome_for_state, parse_extra

pytest_plugins = ["pytester"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """slurmctld + slurmd (Debian's slurm-wlm) with munge, one node with this machine's CPUs, on free ports."""
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sbatch", "scancel") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"Slurm is not installed here ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd needs root")
    pytest.importorskip("submitit")
    root = tmp_path_factory.mktemp("slurm")
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        shutil.chown(key, "munge", "munge")
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
        subprocess.run(["munged", "--force"], capture_output=True)
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir()
    conf = root / "slurm.conf"
    conf.write_text(f"""ClusterName=speedruntest
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=localhost CPUs={os.cpu_count()} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
    env = dict(os.environ, SLURM_CONF=str(conf))
    subprocess.run(["slurmctld", "-f", str(conf)], env=env, check=True)
    subprocess.run(["slurmd", "-f", str(conf), "-N", "localhost"], env=env, check=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
        if "idle" in out:
            break
        time.sleep(1)
    else:
        pytest.skip(f"the test Slurm cluster did not come up: {(root / 'log' / 'slurmctld.log').read_text()[-500:]}")
    yield env
    subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)


def _queue(env: dict) -> str:
    return subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True).stdout.strip()


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


def test_two_items_run_as_two_slurm_jobs_under_xdist(pytester: pytest.Pytester, slurm_cluster: dict,
                                                     cache_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_CONF", slurm_cluster["SLURM_CONF"])
    suite = write_suite(pytester.path / "suites", works=(2.0, 1.0, 0.5))
    for manifest in suite.glob("*.toml"):
        manifest.write_text(manifest.read_text().replace('source = "calibrate"', 'source = "manifest"'))
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
    suite = write_suite(pytester.path / "suites")
    (suite / "mini01.toml").write_text((suite / "mini01.toml").read_text().replace('source = "calibrate"',
                                                                                   'source = "manifest"'))
    hang = 'command:sed -i "1i import time; time.sleep(600)" "$SPEEDRUN_SCRIPT"'
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", f"--speedrun-agent={hang}", "-k", "mini01",
                                           "--speedrun-launcher=slurm", "--speedrun-timeout=3",
                                           f"--speedrun-cache-dir={cache_dir / 'slurm'}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*status timeout*"])
    assert _queue(slurm_cluster) == ""


def test_interrupting_pytest_cancels_the_job(pytester: pytest.Pytester, slurm_cluster: dict, cache_dir: Path) -> None:
    import signal
    import sys

    suite = write_suite(pytester.path / "suites")
    (suite / "mini01.toml").write_text((suite / "mini01.toml").read_text().replace('source = "calibrate"',
                                                                                   'source = "manifest"'))
    hang = 'command:sed -i "1i import time; time.sleep(600)" "$SPEEDRUN_SCRIPT"'
    cmd = [sys.executable, "-m", "pytest", f"--speedrun-suite={suite}", f"--speedrun-agent={hang}", "-k", "mini01",
           "--speedrun-launcher=slurm", f"--speedrun-cache-dir={cache_dir / 'slurm'}", "-p", "no:cacheprovider",
           f"--rootdir={pytester.path}"]
    proc = subprocess.Popen(cmd, cwd=pytester.path, env=slurm_cluster, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while "R" not in _queue(slurm_cluster).split() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _queue(slurm_cluster), "the job never started"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while _queue(slurm_cluster) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _queue(slurm_cluster) == ""


def _spec(tmp_path: Path) -> RunSpec:
    return RunSpec(script=tmp_path / "t.py", workdir=tmp_path, log_path=tmp_path / "run.log", env={}, timeout_s=60)


@pytest.mark.parametrize(("state", "timed_out", "reason"), [
    ("TIMEOUT", True, "Slurm state TIMEOUT"), ("OUT_OF_MEMORY", False, "Slurm state OUT_OF_MEMORY"),
    ("NODE_FAIL", False, "Slurm state NODE_FAIL"), ("CANCELLED", False, "Slurm state CANCELLED"),
    ("PREEMPTED", False, "Slurm state PREEMPTED"),
])
def test_slurm_states_map_to_our_statuses(tmp_path: Path, state: str, timed_out: bool, reason: str) -> None:
    from pytest_speedrun.integrity import judge

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
