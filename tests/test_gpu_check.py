"""The one-GPU check (`benchmarks/gpu_check.py`): its dry run here, and the one-GPU launch path it relies on."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_speedrun.execution import runner

GPU_CHECK = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"

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
    from pytest_speedrun.pipeline.smoke import SMOKE_VAL_TOKENS, smoke_dataset, smoke_task
    from pytest_speedrun.tasks.manifest import find_suite, load_suite

    task19 = next(t for t in load_suite(find_suite("nanogpt")) if t.id == "task19")
    fineweb = smoke_dataset(tmp_path, "fineweb")
    assert task19.launch.env["NANOGPT_VAL_TOKENS"] == "10485760"
    assert smoke_task(task19, fineweb).launch.env["NANOGPT_VAL_TOKENS"] == str(SMOKE_VAL_TOKENS)
    tiny02 = next(t for t in load_suite(find_suite("tiny")) if t.id == "tiny02")
    assert smoke_task(tiny02, smoke_dataset(tmp_path, "tiny")).launch.env == tiny02.launch.env


# A stand-in record: reads the torchrun env and the contract like the real ones, stops like records 12+ when
# asked for more val tokens than the shards hold, and times steps 10..N as they do. MARK names the era.
STAND_IN = '''\
import glob, os, struct, time
# {mark}
class Hyperparameters:
    num_iterations = 200
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
val_tokens = int(os.environ["NANOGPT_VAL_TOKENS"])
held = sum(struct.unpack("<3i", open(f, "rb").read(12))[2] for f in glob.glob(os.environ["NANOGPT_VAL_FILES"]))
assert glob.glob(os.environ["NANOGPT_TRAIN_FILES"]), "no train shards"
if val_tokens > held:
    raise RuntimeError("generator raised StopIteration")  # what records 12+ do at the end of their val files
print("val_tokens", val_tokens, "cuda_visible_devices", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
N = Hyperparameters.num_iterations
t0, train_ms = time.perf_counter(), 0.0
for step in range(N + 1):
    if step == 10:
        train_ms, t0 = 0.0, time.perf_counter()
    if step == N:
        train_ms += 1000 * (time.perf_counter() - t0)
        print(f"step:{{step}}/{{N}} val_loss:4.1234 train_time:{{train_ms:.0f}}ms step_avg:{{train_ms / 10:.2f}}ms")
        break
    time.sleep(0.02)
    ms = train_ms + 1000 * (time.perf_counter() - t0)
    print(f"step:{{step + 1}}/{{N}} train_loss:5.0 train_time:{{ms:.0f}}ms step_avg:{{ms / max(1, step - 9):.2f}}ms")
'''
MARKS = {1: "dense attention, Muon", 2: "uses flex_attention", 3: "flex_attention and torch._scaled_mm",
         4: "flex_attention and torch._scaled_mm, later"}


def stand_in_suite(root: Path) -> tuple[Path, Path]:
    """Suite 'mini' of 3 one-GPU tasks (records 1 -> 2 -> 3 -> 4, eras early, FlexAttention, FP8) pinning
    stand-in records by sha256, and a folder holding those records under other names."""
    from fakes import manifest

    suite, records = root / "suite", root / "usb" / "nested"
    suite.mkdir(parents=True)
    records.mkdir(parents=True)
    bodies = {k: STAND_IN.format(mark=mark).encode() for k, mark in MARKS.items()}
    for k, body in bodies.items():
        (records / f"copy_{k}.py").write_bytes(body)
    for i in (1, 2, 3):
        text = manifest(f"g{i:02d}", "x.py", "y.py", reference="manifest", hints=False, records=(i, i + 1))
        for name, k in (("x.py", i), ("y.py", i + 1)):
            url = f"https://raw.githubusercontent.com/o/r/{'e' * 40}/record_{k}/train_gpt2.py"
            sha = hashlib.sha256(bodies[k]).hexdigest()
            text = text.replace(f'{{ path = "{name}" }}', f'{{ url = "{url}", sha256 = "{sha}", bytes = '
                                                          f'{len(bodies[k])} }}')
        text = text.replace("nproc_per_node = 1", "nproc_per_node = 8\nsupported_gpu_counts = [1, 8]")
        text = text.replace('"4096"', '"10485760"').replace('dataset = "tiny"', 'dataset = "fineweb"\ntrain_shards = 1')
        (suite / f"g{i:02d}.toml").write_text(text)
    return suite, root / "usb"


def gpu_check(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GPU_CHECK), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=GPU_CHECK.parent)


def test_the_dry_run_prints_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    cache, log = tmp_path / "cache", tmp_path / "check.log"
    proc = gpu_check("--dry-run", "--cache-dir", str(cache), "--log", str(log), "--records", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"fetch records --from {tmp_path} --suite nanogpt --cache-dir {cache}" in out
    assert "doctor --suite nanogpt --smoke --nproc 1 -k task19,task04,task12" in out
    assert "3. smoke task19 (record 19, FP8 matmul; warms the compile cache)" in out
    assert "--speedrun-smoke --speedrun-nproc=1" in out and "-k task19" in out
    assert "torch.distributed.run --standalone --nproc_per_node=1" in out
    assert "5. smoke task04 (record 4, early (AdamW/Muon)), task12 (record 12, FlexAttention)" in out
    assert "-k 'task04 or task12'" in out and "budget: 300 s" in out
    assert not cache.exists() and not log.exists()


def test_the_dry_run_with_all_covers_every_one_gpu_task(tmp_path: Path) -> None:
    from pytest_speedrun.tasks.manifest import find_suite, load_suite

    proc = gpu_check("--dry-run", "--all", "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    one_gpu = [t.id for t in load_suite(find_suite("nanogpt")) if 1 in t.launch.supported_gpu_counts]
    assert len(one_gpu) == 13
    smoked = proc.stdout.split("\n5. smoke ")[1].splitlines()[0]
    assert sorted([*re.findall(r"task\d\d", smoked), "task19"]) == sorted(one_gpu)
    assert "budget: none" in proc.stdout


@pytest.mark.slow
def test_the_whole_check_runs_on_a_stand_in_suite(tmp_path: Path) -> None:
    """Everything but the GPU: import, doctor, smoke of each era, timing under the harness and bare torchrun,
    one log. CUDA_VISIBLE_DEVICES=0 makes the harness lease a (stand-in) GPU, so runs go through torchrun."""
    suite, usb = stand_in_suite(tmp_path)
    log = tmp_path / "check.log"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
    proc = gpu_check("--suite", str(suite), "--records", str(usb), "--cache-dir", str(tmp_path / "cache"),
                     "--log", str(log), "--runs", "2", "--budget-s", "500", env=env)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "6 pinned reference(s), 4 distinct file(s): 4 found, 0 already cached, 0 missing" in text
    assert "suite " in text and "== doctor" in text and "FP8 matmul" in text
    summary = text.split("== summary")[1]
    assert "3 of 3 ran" in summary
    assert re.search(r"g03\s+record 3, FP8 matmul\s+passed", summary)
    assert re.search(r"g01\s+record 1, early \(AdamW/Muon\)\s+passed", summary)
    assert re.search(r"g02\s+record 2, FlexAttention\s+passed", summary)
    assert "harness  n=2" in summary and "bare     n=2" in summary
    ratio = float(re.search(r"harness/bare train_time ratio (\d+\.\d+)", summary).group(1))
    assert 0.5 < ratio < 2.0
    bare_log = (tmp_path / "cache" / "gpu-check" / "bare-1" / "run.log").read_text()
    assert "val_tokens 524288 cuda_visible_devices 0" in bare_log  # the harness's contract and lease


@pytest.mark.slow
def test_the_check_stops_at_its_budget_and_lists_what_did_not_fit(tmp_path: Path) -> None:
    suite, usb = stand_in_suite(tmp_path)
    log = tmp_path / "check.log"
    started = time.monotonic()
    proc = gpu_check("--suite", str(suite), "--records", str(usb), "--cache-dir", str(tmp_path / "cache"),
                     "--log", str(log), "--runs", "2", "--budget-s", "15",
                     env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"})
    assert proc.returncode == 1
    assert time.monotonic() - started < 15 + 60  # import and doctor may finish; nothing starts after the budget
    summary = log.read_text().split("== summary")[1]
    assert re.search(r"g01\s+not run: the budget ran out", summary)
    assert re.search(r"g02\s+not run: the budget ran out", summary)


def test_a_crash_is_summarised_by_its_cause_not_by_torchruns_report(tmp_path: Path) -> None:
    sys.path.insert(0, str(GPU_CHECK.parent))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(GPU_CHECK.parent))
    log = tmp_path / "run.log"
    log.write_text("Traceback (most recent call last):\n  File \"train_gpt2.py\", line 9, in <module>\n"
                   "KeyError: 'RANK'\nTraceback (most recent call last):\n"
                   "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
                   "  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html\n")
    assert gpu_check.first_error(str(log)) == "KeyError: 'RANK'"
