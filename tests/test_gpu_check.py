"""The one-GPU check (`benchmarks/gpu_check.py`): its dry run here, and the one-GPU launch path it relies on."""

from __future__ import annotations

import sys
from pathlib import Path

from pytest_speedrun import runner

# What the real records do first on any GPU count (e.g. record 19: rank = int(os.environ['RANK'])).
NEEDS_TORCHRUN = "import os\nprint('rank', int(os.environ['RANK']), 'of', os.environ['WORLD_SIZE'])\n"


def _spec(tmp_path: Path, gpus: int) -> runner.RunSpec:
    script = tmp_path / "train_gpt2.py"
    script.write_text(NEEDS_TORCHRUN)
    return runner.RunSpec(script=script, workdir=tmp_path, log_path=tmp_path / "run.log", env=runner.contract_env(
        train_glob="t", val_glob="v", val_tokens=1, task_env={}, seed=0, threads=1), timeout_s=120, nproc=1,
        python=sys.executable, gpus=gpus)


def test_a_one_gpu_run_goes_through_torchrun_as_the_records_expect(tmp_path: Path) -> None:
    spec = _spec(tmp_path, gpus=1)
    assert runner.command_for(spec)[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    out = runner.run(spec)
    assert out.finished, out.log_path.read_text()
    assert "rank 0 of 1" in out.log_path.read_text()


def test_a_one_process_cpu_run_stays_plain_python(tmp_path: Path) -> None:
    assert runner.command_for(_spec(tmp_path, gpus=0)) == [sys.executable, str(tmp_path / "train_gpt2.py")]


def test_smoke_runs_ask_for_no_more_val_tokens_than_the_smoke_shard_holds(tmp_path: Path) -> None:
    from pytest_speedrun.smoke import SMOKE_VAL_TOKENS, smoke_dataset, smoke_task
    from pytest_speedrun.tasks import find_suite, load_suite

    task19 = next(t for t in load_suite(find_suite("nanogpt")) if t.id == "task19")
    fineweb = smoke_dataset(tmp_path, "fineweb")
    assert task19.launch.env["NANOGPT_VAL_TOKENS"] == "10485760"
    assert smoke_task(task19, fineweb).launch.env["NANOGPT_VAL_TOKENS"] == str(SMOKE_VAL_TOKENS)
    tiny02 = next(t for t in load_suite(find_suite("tiny")) if t.id == "tiny02")
    assert smoke_task(tiny02, smoke_dataset(tmp_path, "tiny")).launch.env == tiny02.launch.env
