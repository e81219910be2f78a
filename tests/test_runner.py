import os
import sys
import time
from pathlib import Path

import pytest

from pytest_speedrun.execution import runner


def _spec(tmp_path: Path, body: str, timeout: float = 30, env: dict | None = None) -> runner.RunSpec:
    script = tmp_path / "train_gpt2.py"
    script.write_text(body)
    return runner.RunSpec(script=script, workdir=tmp_path, log_path=tmp_path / "art" / "run.log",
                          env=env or {"PATH": os.environ["PATH"]}, timeout_s=timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (its parent, not us, reaps it).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def test_contract_env_withholds_secrets_and_sets_the_contract() -> None:
    env = runner.contract_env(train_glob="/d/train_*.bin", val_glob="/d/val_*.bin", val_tokens=4096,
                              task_env={"EXTRA": "1"}, seed=3, threads=2,
                              base={"PATH": "/bin", "OPENAI_API_KEY": "sk-x", "NCCL_DEBUG": "INFO"})
    assert "OPENAI_API_KEY" not in env
    assert env["PATH"] == "/bin" and env["NCCL_DEBUG"] == "INFO" and env["EXTRA"] == "1"
    assert env["NANOGPT_TRAIN_FILES"] == "/d/train_*.bin" and env["NANOGPT_VAL_FILES"] == "/d/val_*.bin"
    assert env["NANOGPT_VAL_TOKENS"] == "4096" and env["SPEEDRUN_SEED"] == "3" and env["OMP_NUM_THREADS"] == "2"


def test_task_env_can_set_val_tokens() -> None:
    env = runner.contract_env(train_glob="a", val_glob="b", val_tokens=1, task_env={"NANOGPT_VAL_TOKENS": "77"},
                              seed=0, threads=None, base={})
    assert env["NANOGPT_VAL_TOKENS"] == "77" and "OMP_NUM_THREADS" not in env


def test_several_processes_launch_through_torchrun(tmp_path: Path) -> None:
    spec = runner.RunSpec(script=tmp_path / "t.py", workdir=tmp_path, log_path=tmp_path / "l", env={},
                          timeout_s=1, nproc=8, python="/py")
    assert runner.command_for(spec) == ["/py", "-m", "torch.distributed.run", "--standalone",
                                        "--nproc_per_node=8", str(tmp_path / "t.py")]


def test_run_captures_stdout_and_stderr_and_measures_wall_time(tmp_path: Path) -> None:
    out = runner.run(_spec(tmp_path, "import sys, time\nprint('hello')\ntime.sleep(0.3)\n"
                                     "print('oops', file=sys.stderr)\nsys.exit(3)\n"))
    assert out.exit_code == 3 and not out.timed_out and not out.finished
    assert out.wall_s >= 0.3
    assert sorted(out.log_path.read_text().split()) == ["hello", "oops"]


def test_timeout_kills_the_whole_process_group_and_escaped_children(tmp_path: Path) -> None:
    body = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "escaped = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
        "print(child.pid, escaped.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    start = time.monotonic()
    out = runner.run(_spec(tmp_path, body, timeout=2))
    assert out.timed_out and out.exit_code is None
    assert time.monotonic() - start < 15
    pids = [int(p) for p in out.log_path.read_text().split()[:2]]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "orphan processes survived the timeout"


def test_children_left_behind_after_a_normal_exit_are_killed(tmp_path: Path) -> None:
    body = ("import subprocess, sys\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\nprint(c.pid)\n")
    out = runner.run(_spec(tmp_path, body))
    assert out.exit_code == 0
    pid = int(out.log_path.read_text().split()[0])
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_a_missing_interpreter_is_a_run_error(tmp_path: Path) -> None:
    from pytest_speedrun.errors import RunError

    spec = _spec(tmp_path, "pass\n")
    spec = runner.RunSpec(**{**spec.__dict__, "python": str(tmp_path / "no-python")})
    with pytest.raises(RunError, match="cannot start"):
        runner.run(spec)


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "l"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert runner.tail(log, 2) == "line 98\nline 99"
    assert runner.tail(tmp_path / "missing") == ""


def test_runs_use_the_current_interpreter_by_default() -> None:
    assert runner.RunSpec(script=Path("a"), workdir=Path("."), log_path=Path("l"), env={}, timeout_s=1).python \
        == sys.executable
