"""The one-GPU check (`benchmarks/gpu_check.py`): its plan, parts and summary on stand-ins here, and the one-GPU
launch path it relies on."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

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


@pytest.fixture(scope="module")
def gc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


# A stand-in record: prints its own code first, as the real ones do; reads the torchrun env and the contract like
# them; stops like records 12+ when asked for more val tokens than the shards hold; times steps 10..N as they do.
# MARK names the era. With CRASH it fails at its first backward step the way record 19 does on torch 2.11: its
# fake op's strides disagree with the real op's, and torchrun shows the worker's traceback as `[rank0]: ` lines.
STAND_IN = '''\
import glob, os, struct, sys, time, traceback
# {mark}
CRASH = {crash}
print(open(sys.argv[0]).read())
print("=" * 100)
class Hyperparameters:
    num_iterations = 200
def show_worker_error(kind, exc, tb):
    for line in "".join(traceback.format_exception(kind, exc, tb)).splitlines():
        print(f"[rank{{os.environ['RANK']}}]: {{line}}", file=sys.stderr, flush=True)
sys.excepthook = show_worker_error
def mm_backward_checked(grad_shape):
    fake_stride, real_stride = (1, 768), (50304, 1)
    if fake_stride != real_stride:
        raise AssertionError("expected size 50304==50304, stride 1==768 at dim=0; expected size 768==768, "
                             "stride 50304==1 at dim=1\\nError in op: torch.ops.nanogpt.mm_backward.default")
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
    if step == 0:
        print(f"step:0/{{N}} val_loss:10.8258 train_time:0ms step_avg:nanms", flush=True)
    if CRASH:
        mm_backward_checked((50304, 768))
    time.sleep(0.02)
    ms = train_ms + 1000 * (time.perf_counter() - t0)
    print(f"step:{{step + 1}}/{{N}} train_loss:5.0 train_time:{{ms:.0f}}ms step_avg:{{ms / max(1, step - 9):.2f}}ms")
'''
MARKS = {1: "dense attention, Muon", 2: "uses flex_attention", 3: "flex_attention and torch._scaled_mm",
         4: "flex_attention and torch._scaled_mm, later"}
RECORD19_ASSERTION = ("AssertionError: expected size 50304==50304, stride 1==768 at dim=0; expected size 768==768, "
                      "stride 50304==1 at dim=1")


def stand_in_bodies(crash: int | None) -> dict[int, bytes]:
    return {k: STAND_IN.format(mark=mark, crash=k == crash).encode() for k, mark in MARKS.items()}


def stand_in_suite(root: Path, crash: int | None = None) -> tuple[Path, Path]:
    """Suite 'mini' of 3 one-GPU tasks (records 1 -> 2 -> 3 -> 4, eras early, FlexAttention, FP8) pinning
    stand-in records by sha256, and a folder holding those records under other names. Record `crash` fails at
    its first backward step as record 19 does on a torch that checks fake strides."""
    from fakes import manifest

    suite, records = root / "suite", root / "usb" / "nested"
    suite.mkdir(parents=True)
    records.mkdir(parents=True)
    bodies = stand_in_bodies(crash)
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


def gpu_check(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GPU_CHECK), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=GPU_CHECK.parent)


def _parts(out: str) -> list[tuple[str, int]]:
    return [(m.group(1), int(m.group(2))) for m in re.finditer(r"^\d\. (\S+)\s+cap\s+(\d+) s", out, re.MULTILINE)]


def test_the_dry_run_shows_the_parts_their_caps_and_a_total_within_nine_minutes(tmp_path: Path) -> None:
    cache, log = tmp_path / "cache", tmp_path / "check.log"
    proc = gpu_check("--dry-run", "--cache-dir", str(cache), "--log", str(log), "--records", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    parts = _parts(out)
    assert [name for name, _ in parts] == ["doctor", "smoke", "timing", "tiny-gpu", "quiet-host"]
    assert dict(parts) == {"doctor": 30, "smoke": 240, "timing": 90, "tiny-gpu": 60, "quiet-host": 120}
    assert sum(cap for _, cap in parts) <= 540 and "total: 540 s of caps (9.0 min); budget 540 s" in out
    assert f"fetch records --from {tmp_path} --suite nanogpt --cache-dir {cache}" in out
    assert "doctor --suite nanogpt --smoke --nproc 1 -k task19,task12,task04" in out
    smokes = re.findall(r"^   (task\d\d) \(record \d+, ([^)]+\)?)\): \$ .*--speedrun-smoke --speedrun-nproc=1 -k \1$",
                        out, re.MULTILINE)
    assert smokes == [("task19", "FP8 matmul"), ("task12", "FlexAttention"), ("task04", "early (AdamW/Muon)")]
    assert "torch.distributed.run --standalone --nproc_per_node=1" in out
    pytest_lines = [ln for ln in out.splitlines() if " -m pytest " in ln]
    assert len(pytest_lines) == 8 and all(f"--speedrun-python={sys.executable}" in ln for ln in pytest_lines)
    assert f"interpreter: {sys.executable}" in out and "cannot build runtimes" in out
    tiny_gpu = [ln for ln in pytest_lines if "results/tiny-gpu" in ln]
    assert len(tiny_gpu) == 1 and "--speedrun-gpus=0" in tiny_gpu[0] and tiny_gpu[0].endswith("-k tiny04")
    quiet = [ln for ln in pytest_lines if "results/quiet-host" in ln]
    assert [re.search(r"--speedrun-agent=(\w+) --speedrun-threads=(\d+)", ln).groups() for ln in quiet] == [
        ("oracle", "1"), ("baseline", "1"), ("oracle", "4")]
    assert all(ln.lstrip().startswith("$ CUDA_VISIBLE_DEVICES= ") and " -n " not in ln for ln in quiet)
    assert not cache.exists() and not log.exists()


def test_the_dry_run_with_only_quiet_host_covers_every_tiny_task(tmp_path: Path) -> None:
    proc = gpu_check("--dry-run", "--only", "quiet-host", "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    assert _parts(proc.stdout) == [("quiet-host", 480)]
    assert "-k 'tiny01 or tiny02 or tiny03 or tiny04'" in proc.stdout
    assert "left out by --only: doctor, smoke, timing, tiny-gpu" in proc.stdout
    assert "fetch records" not in proc.stdout  # no part of it needs the record scripts


def test_an_unknown_part_is_refused_naming_the_parts(tmp_path: Path) -> None:
    proc = gpu_check("--dry-run", "--only", "smoke,warp", "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode != 0
    assert "--only smoke,warp: unknown part warp; choose from doctor, smoke, timing, tiny-gpu, quiet-host" in \
        proc.stderr


def test_a_part_gets_its_cap_plus_what_earlier_parts_left_and_one_below_half_its_cap_does_not_fit(
        gc: ModuleType) -> None:
    parts = gc.PARTS
    assert gc.allotment(parts, 0, 540) == 30
    assert gc.allotment(parts, 1, 540 - 12) == 240 + 18  # the doctor took 12 of its 30 s
    quiet = len(parts) - 1
    assert gc.fits(parts[quiet], gc.allotment(parts, quiet, 60))
    assert not gc.fits(parts[quiet], gc.allotment(parts, quiet, 59))


def test_a_part_that_does_not_fit_is_listed_in_the_log_and_the_json_summary(tmp_path: Path) -> None:
    log = tmp_path / "check.log"
    proc = gpu_check("--only", "tiny-gpu,quiet-host", "--budget-s", "100", "--cache-dir", str(tmp_path / "c"),
                     "--log", str(log))
    assert proc.returncode == 1, proc.stderr
    text = log.read_text()
    assert "== tiny-gpu: did not fit" in text and "== quiet-host: did not fit" in text
    assert "did not fit the budget: tiny-gpu, quiet-host (run them in a later session: --only tiny-gpu,quiet-host)" \
        in text
    assert "== doctor" not in text and "== smoke" not in text and "$ " not in text  # --only: nothing else ran
    summary = json.loads(log.with_suffix(".json").read_text())
    status = {p["name"]: (p["status"], p["cap_s"]) for p in summary["parts"]}
    assert status == {"doctor": ("skipped", 30), "smoke": ("skipped", 240), "timing": ("skipped", 90),
                      "tiny-gpu": ("did-not-fit", 60), "quiet-host": ("did-not-fit", 480)}
    assert summary["did_not_fit"] == ["tiny-gpu", "quiet-host"] and summary["python"] == sys.executable


# What torch 2.11 and torchrun printed when record 19 crashed (its text, not the record's): a row of `=` from the
# record's own output, the worker's traceback with `[rank0]: ` prefixes, then torchrun's report.
RECORD19_CRASH = f"""\
step:0/20 val_loss:10.8258 train_time:0ms step_avg:nanms
====================================================================================================
[rank0]: Traceback (most recent call last):
[rank0]:   File "/cache/gpu-check/x/smoke/train_gpt2.py", line 571, in <module>
[rank0]:     loss.backward()
[rank0]: {RECORD19_ASSERTION}
[rank0]: Error in op: torch.ops.nanogpt.mm_backward.default
E1204 12:00:00.000000 1234 torch/distributed/elastic/multiprocessing/api.py:874] failed (exitcode: 1)
Traceback (most recent call last):
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
train_gpt2.py FAILED
------------------------------------------------------------
"""


def test_a_crash_reason_is_the_first_exception_line_with_or_without_a_rank_prefix(gc: ModuleType,
                                                                                 tmp_path: Path) -> None:
    assert gc.crash_reason(RECORD19_CRASH) == RECORD19_ASSERTION
    assert gc.crash_reason(RECORD19_CRASH.replace("[rank0]: ", "")) == RECORD19_ASSERTION
    log = tmp_path / "run.log"
    log.write_text("Traceback (most recent call last):\n  File \"train_gpt2.py\", line 9, in <module>\n"
                   "KeyError: 'RANK'\nTraceback (most recent call last):\n"
                   "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
                   "  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html\n")
    assert gc.first_error(str(log)) == "KeyError: 'RANK'"
    # no exception line: the last line that is not decoration, never a row of `=`
    assert gc.crash_reason("Killed\n" + "=" * 60 + "\n\n") == "Killed"


def test_the_log_leaves_out_every_line_of_a_record_script(gc: ModuleType, tmp_path: Path) -> None:
    script = tmp_path / "record.py"
    script.write_text(STAND_IN.format(mark="flex_attention and torch._scaled_mm", crash=True))
    source = gc.SourceFilter()
    source.add(script)
    shortened = script.read_text().replace("num_iterations = 200", "num_iterations = 20")  # the smoke copy
    traceback = "\n".join(f"[rank0]: {ln}" for ln in script.read_text().splitlines()[10:14])
    ours = ["== smoke (cap 240 s)", "step:20/20 val_loss:4.1234 train_time:400ms step_avg:40.00ms",
            f"[rank0]: {RECORD19_ASSERTION}", "=" * 40, ")"]
    log = gc.Log(tmp_path / "check.log", source)
    log(script.read_text())
    log(shortened)
    log(traceback)
    log("\n".join(ours))
    log.file.close()
    written = [ln for ln in (tmp_path / "check.log").read_text().splitlines() if ln]
    assert written == ours  # decoration and lines without a letter or digit stay; every source line went
    assert source.dropped > 0
    assert gc.crash_reason(script.read_text() + "\n" + RECORD19_CRASH, source) == RECORD19_ASSERTION


def _task(tid: str, record: int) -> SimpleNamespace:
    return SimpleNamespace(id=tid, start=SimpleNamespace(record=record))


def test_a_record_whose_run_crashes_hands_over_to_an_older_one_and_is_not_run_again(gc: ModuleType,
                                                                                   tmp_path: Path) -> None:
    calls: list[tuple[str, str]] = []

    def harness(task: SimpleNamespace) -> dict:
        calls.append(("harness", task.id))
        if task.id == "task19":
            return {"status": "crashed", "reason": RECORD19_ASSERTION}
        return {"status": "passed", "train_time_ms": 1000.0, "wall_s": 30.0}

    def bare(task: SimpleNamespace, h: dict, k: int) -> dict:
        calls.append(("bare", task.id))
        return {"status": "passed", "train_time_ms": 990.0 + k, "wall_s": 25.0}

    log = gc.Log(tmp_path / "check.log", gc.SourceFilter())
    timed = gc.time_records([_task("task19", 19), _task("task12", 12), _task("task04", 4)], 3, harness, bare,
                            gc.Deadline(300), log)
    assert timed.task.id == "task12" and len(timed.harness) == len(timed.bare) == 3
    assert calls.count(("harness", "task19")) == 1 and ("bare", "task19") not in calls
    assert "task04" not in {tid for _, tid in calls}
    assert timed.handed_over == [{"task": "task19", "record": 19, "side": "harness", "status": "crashed",
                                  "reason": RECORD19_ASSERTION}]


def test_timing_takes_the_newest_record_whose_smoke_passed(gc: ModuleType, tmp_path: Path) -> None:
    tasks = (_task("task19", 19), _task("task12", 12), _task("task04", 4))
    plan = SimpleNamespace(smoke_tasks=tasks)
    smoke = gc.PartReport("smoke", 240, status="failed", items=[
        {"task": "task19", "status": "crashed"}, {"task": "task12", "status": "passed"},
        {"task": "task04", "status": "passed"}])
    ctx = gc.Context(plan, gc.Log(tmp_path / "l.log", gc.SourceFilter()), {"smoke": smoke}, {})
    assert [t.id for t in gc.timing_candidates(ctx)[0]] == ["task12", "task04"]
    # without a smoke part in this session: every record, less those that crashed in the last check here
    ctx = gc.Context(plan, ctx.log, {}, {"task19": RECORD19_ASSERTION})
    assert [t.id for t in gc.timing_candidates(ctx)[0]] == ["task12", "task04"]


def _source_keys(gc: ModuleType, bodies: dict[int, bytes]) -> set[str]:
    return {k for body in bodies.values() for k in map(gc._key, body.decode().splitlines()) if k}


@pytest.mark.slow
def test_the_whole_check_runs_on_stand_ins_and_hands_over_from_a_record_that_crashes_like_record_19(
        gc: ModuleType, tmp_path: Path) -> None:
    """Everything but the GPU, all five parts: import, doctor, one smoke per era, timing under the harness and
    bare torchrun, the tiny parts on a stand-in tiny suite. CUDA_VISIBLE_DEVICES=0 makes the harness lease a
    (stand-in) GPU, so nanogpt runs go through torchrun on the CPU. Record 3 (g03's start, the FP8 era) crashes
    as record 19 did: its smoke fails with the `[rank0]:` line as reason, and timing takes record 2."""
    from fakes import write_suite

    suite, usb = stand_in_suite(tmp_path, crash=3)
    tiny = write_suite(tmp_path / "tiny")
    log = tmp_path / "check.log"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
    proc = gpu_check("--suite", str(suite), "--tiny-suite", str(tiny), "--records", str(usb), "--cache-dir",
                     str(tmp_path / "cache"), "--log", str(log), "--runs", "2", env=env)
    text = log.read_text()
    assert proc.returncode == 1, text[-3000:]  # the smoke part failed: record 3 crashed
    assert "6 pinned reference(s), 4 distinct file(s): 4 found, 0 already cached, 0 missing" in text
    assert f"interpreter: {sys.executable}" in text.splitlines()[1] and "== doctor" in text
    summary = json.loads(log.with_suffix(".json").read_text())
    parts = {p["name"]: p for p in summary["parts"]}
    smoke = {r["task"]: r for r in parts["smoke"]["items"]}
    assert list(smoke) == ["g03", "g02", "g01"]  # newest era first
    assert smoke["g03"]["status"] == "crashed" and smoke["g03"]["reason"] == RECORD19_ASSERTION
    assert smoke["g02"]["status"] == smoke["g01"]["status"] == "passed"
    timing = parts["timing"]
    assert timing["status"] == "passed" and timing["figures"]["record"] == 2
    assert timing["figures"]["harness"]["n"] == timing["figures"]["bare"]["n"] == 2
    assert 0.5 < timing["figures"]["ratio"] < 2.0
    timed = [json.loads(ln)["task"] for ln in
             (tmp_path / "cache" / "gpu-check" / "results" / "timing" / "results.jsonl").read_text().splitlines()]
    assert timed == ["g02", "g02"]  # the crashing record was never timed
    bare_log = (tmp_path / "cache" / "gpu-check" / "bare-1" / "run.log").read_text()
    assert "val_tokens 524288 cuda_visible_devices 0" in bare_log  # the harness's contract and lease
    tiny_gpu = parts["tiny-gpu"]
    assert [(r["task"], r["agent"]) for r in tiny_gpu["items"]] == [("mini02", "oracle")]
    assert tiny_gpu["items"][0]["fsr"] is not None
    quiet = parts["quiet-host"]
    assert [(r["task"], r["agent"], r["threads"]) for r in quiet["items"]] == [
        ("mini02", "oracle", 1), ("mini02", "baseline", 1), ("mini02", "oracle", 4)]
    assert all(r["fsr_low"] <= r["fsr"] <= r["fsr_high"] and "goal" in r for r in quiet["items"])
    # the stand-ins print their own code and the crash quotes it: not one of their lines reaches the log or JSON
    keys = _source_keys(gc, stand_in_bodies(crash=3))
    assert not [ln for ln in text.splitlines() if gc._key(ln) in keys]
    assert "line(s) of record source left out of this log" in text
    assert not [ln for ln in json.dumps(summary, indent=1).splitlines() if gc._key(ln.strip(' ",')) in keys]


def test_an_item_row_says_which_compat_fixes_and_runtime_it_ran_with_when_the_record_has_them(
        gc: ModuleType) -> None:
    source = gc.SourceFilter()
    fixed = gc.item_row({"task": "task19", "agent": "smoke", "status": "passed", "train_time_ms": 900.0,
                         "runtime": "nightly-2501", "torch": "2.11.0", "compat": ["fp8-fake-strides"]}, source)
    assert fixed["compat"] == ["fp8-fake-strides"] and fixed["torch"] == "2.11.0"
    assert "compat: fp8-fake-strides" in gc.describe(fixed) and "runtime: nightly-2501" in gc.describe(fixed)
    older = gc.item_row({"task": "task04", "agent": "smoke", "status": "crashed", "reasons": ["exit code 1"]},
                        source)  # a record written before those fields existed
    assert older["compat"] == [] and older["runtime"] is None and older["reason"] == "exit code 1"


@pytest.mark.slow
def test_only_timing_runs_just_that_part_and_hands_over_from_the_crashing_record(gc: ModuleType,
                                                                               tmp_path: Path) -> None:
    """A later session's `--only timing`: no smoke part ran, so the first harness run of record 3 is its smoke;
    it crashes as record 19 did, and record 2 is timed instead. No other part runs."""
    suite, usb = stand_in_suite(tmp_path, crash=3)
    log = tmp_path / "check.log"
    proc = gpu_check("--only", "timing", "--suite", str(suite), "--records", str(usb), "--cache-dir",
                     str(tmp_path / "cache"), "--log", str(log), "--runs", "2",
                     env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"})
    text = log.read_text()
    assert proc.returncode == 1, text[-3000:]  # a record crashed: the timing part ran, it did not pass
    assert "== timing" in text and not re.search(r"^== (doctor|smoke|tiny-gpu|quiet-host)", text, re.MULTILINE)
    parts = {p["name"]: p for p in json.loads(log.with_suffix(".json").read_text())["parts"]}
    assert {n: p["status"] for n, p in parts.items() if n != "timing"} == dict.fromkeys(
        ("doctor", "smoke", "tiny-gpu", "quiet-host"), "skipped")
    timing = parts["timing"]
    assert timing["status"] == "ran" and timing["figures"]["record"] == 2 and "ratio" in timing["figures"]
    assert timing["figures"]["handed_over_from"] == [{"task": "g03", "record": 3, "side": "harness",
                                                      "status": "crashed", "reason": RECORD19_ASSERTION}]
    runs = [json.loads(ln)["task"] for ln in
            (tmp_path / "cache" / "gpu-check" / "results" / "timing" / "results.jsonl").read_text().splitlines()]
    assert runs == ["g03", "g02", "g02"]  # one run of the crashing record, then only record 2
    keys = _source_keys(gc, stand_in_bodies(crash=3))
    assert not [ln for ln in text.splitlines() if gc._key(ln) in keys]


def test_a_record_that_crashed_in_the_last_check_on_this_torch_is_not_tried_again(gc: ModuleType,
                                                                                  tmp_path: Path) -> None:
    last = tmp_path / "check.json"
    smoke = {"name": "smoke", "items": [{"task": "task19", "status": "crashed", "reason": RECORD19_ASSERTION},
                                        {"task": "task12", "status": "stopped"},
                                        {"task": "task04", "status": "passed"}]}
    last.write_text(json.dumps({"python": sys.executable, "torch": gc.torch_version(), "parts": [smoke]}))
    assert gc.previous_crashes(last) == {"task19": RECORD19_ASSERTION}
    last.write_text(json.dumps({"python": sys.executable, "torch": "2.7.1", "parts": [smoke]}))
    assert gc.previous_crashes(last) == {}  # another torch: it may run there
    assert gc.previous_crashes(tmp_path / "missing.json") == {}
