"""The optimization track (issue 22): the steps metric in the manifest, FSR over steps, and the contract that
fixes data, batch, architecture and one forward-backward pass per step, checked on what a run recorded.

The forms of a change (a literal, a renamed value, a computed one, one read from another file) are each run
for real under the recorder on a small stand-in written for these tests (three SGD steps of a one-layer
attention model: about two seconds each, mostly torch's import); the comparison itself is tested on records."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_speedrun.errors import TaskError
from pytest_speedrun.judging import steps_contract
from pytest_speedrun.judging.status import STEPS, TIME
from pytest_speedrun.results.record import ItemResult
from pytest_speedrun.results.scoring import Reference, exact_interval, score_task, steps_score
from pytest_speedrun.results.summary import fsr_cell, summary_lines
from pytest_speedrun.tasks.manifest import find_suite, load_suite, load_task

STANDIN = '''\
import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 8
WIDTH = 32
HEADS = 2
CONTEXT = 16
VOCAB = 64
STEPS = 3


class Net(nn.Module):
    def __init__(self, vocab, width, heads):
        super().__init__()
        self.heads = heads
        self.emb = nn.Embedding(vocab, width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, vocab)

    def forward(self, x, y):
        h = self.emb(x)
        B, T, C = h.shape
        q, k, v = self.qkv(h).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        return F.cross_entropy(self.out(a).reshape(-1, VOCAB), y.reshape(-1))


def batch():
    x = torch.randint(0, VOCAB, (BATCH, CONTEXT + 1))
    return x[:, :-1], x[:, 1:]


torch.manual_seed(0)
model = Net(VOCAB, WIDTH, HEADS)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(STEPS):
    x, y = batch()
    loss = model(x, y)
    loss.backward()
    opt.step()
    opt.zero_grad()
with torch.no_grad():
    x, y = batch()
    print(f"step:{STEPS}/{STEPS} val_loss:{model(x, y).item():.4f} train_time:1ms")
'''


def _record(tmp_path: Path, source: str, extra: dict[str, str] | None = None) -> dict:
    """Run `source` (beside `extra` files) under the recorder; its rank-0 record."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, text in (extra or {}).items():
        (tmp_path / name).write_text(text)
    (tmp_path / "train.py").write_text(source)
    task = SimpleNamespace(metric=STEPS)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update({"OMP_NUM_THREADS": "1"})
    env.update(steps_contract.run_env(task, tmp_path, env))
    done = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    log = tmp_path / "run.log"
    steps_contract.collect(task, tmp_path, log)
    return steps_contract.read_records(steps_contract.record_dir(log))[0]


# Runs every variant in a child forked from one process that imported torch once (a tenth of a second each
# instead of seconds), with the recorder installed by the same function sitecustomize calls at start-up.
DRIVER = """
import importlib.util, os, runpy, sys
import torch
spec = importlib.util.spec_from_file_location("steps_hook", sys.argv[1])
hook = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hook)
for folder in sys.argv[2:]:
    pid = os.fork()
    if pid == 0:
        os.chdir(folder)
        sys.path.insert(0, folder)
        hook._install(torch, hook._Recorder(os.path.join(folder, ".speedrun-steps"), 0))
        runpy.run_path("train.py", run_name="__main__")
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0, folder
"""


def _variants() -> dict[str, tuple[str, dict[str, str]]]:
    out = {"start": (STANDIN, {}), "heads": (STANDIN.replace("HEADS = 2", "HEADS = 4"), {}),
           "accumulation": (STANDIN.replace("""    x, y = batch()
    loss = model(x, y)
    loss.backward()
""", """    for micro in range(2):
        x, y = batch()
        loss = model(x, y)
        loss.backward()
"""), {})}
    return {**out, **{form: (change(STANDIN), extra) for form, (change, extra) in FORMS.items()}}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("variants")
    folders = []
    for name, (source, extra) in _variants().items():
        folder = root / name
        folder.mkdir()
        (folder / steps_contract.RECORD_DIR).mkdir()
        for file, text in extra.items():
            (folder / file).write_text(text)
        (folder / "train.py").write_text(source)
        folders.append(str(folder))
    done = subprocess.run([sys.executable, "-c", DRIVER, str(steps_contract.HOOK_DIR / "sitecustomize.py"), *folders],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return {name: steps_contract.read_records(root / name / steps_contract.RECORD_DIR)[0] for name in _variants()}


@pytest.fixture(scope="module")
def start(recorded: dict[str, dict]) -> dict:
    return recorded["start"]


def test_the_unchanged_standin_keeps_the_contract(start: dict, tmp_path: Path) -> None:
    assert start["forwards"] == start["backwards"] == 3
    assert start["inputs"] == {"[[8, 16], [8, 16]]": 3}
    assert steps_contract.compare(start, start, 3) == []
    # started the harness's way (sitecustomize on PYTHONPATH, installed at `import torch`), it records the same
    assert _record(tmp_path, STANDIN) == start


# (form, change to the source, extra files); the batch 8 -> 4 and the width 32 -> 64, each in four forms
FORMS = {
    "batch-literal": (lambda s: s.replace("BATCH = 8", "BATCH = 4"), {}),
    "batch-renamed": (lambda s: s.replace("BATCH = 8", "ROWS_PER_STEP = 4").replace("(BATCH,", "(ROWS_PER_STEP,"),
                      {}),
    "batch-computed": (lambda s: s.replace("BATCH = 8", "BATCH = sum(range(3)) + 1"), {}),
    "batch-other-file": (lambda s: s.replace("BATCH = 8", "from shape_settings import BATCH"),
                         {"shape_settings.py": "BATCH = 4\n"}),
    "width-literal": (lambda s: s.replace("WIDTH = 32", "WIDTH = 64"), {}),
    "width-renamed": (lambda s: s.replace("WIDTH = 32", "D_MODEL = 64").replace("VOCAB, WIDTH,", "VOCAB, D_MODEL,"),
                      {}),
    "width-computed": (lambda s: s.replace("WIDTH = 32", "WIDTH = 2 ** (5 + len([0]))"), {}),
    "width-other-file": (lambda s: s.replace("WIDTH = 32", "from shape_settings import WIDTH"),
                         {"shape_settings.py": "WIDTH = 64\n"}),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_a_changed_batch_or_width_is_caught_in_every_form(form: str, start: dict, recorded: dict) -> None:
    assert FORMS[form][0](STANDIN) != STANDIN
    reasons = steps_contract.compare(start, recorded[form], 3)
    if form.startswith("batch"):
        assert any("batch size 8 -> 4" in r for r in reasons), reasons
    else:
        assert any("parameters changed" in r and "[96, 32]" in r and "[192, 64]" in r for r in reasons), reasons
        assert all("passes" not in r for r in reasons)


def test_gradient_accumulation_is_caught(start: dict, recorded: dict) -> None:
    reasons = steps_contract.compare(start, recorded["accumulation"], 3)
    assert any("6 backward passes for 3 steps" in r for r in reasons), reasons
    assert any("6 training forward passes" in r for r in reasons), reasons
    assert not any("batch size" in r for r in reasons)


def test_changed_heads_are_named(start: dict, recorded: dict) -> None:
    reasons = steps_contract.compare(start, recorded["heads"], 3)
    assert reasons == [r for r in reasons if "heads 2 -> 4" in r] and reasons, reasons


# --- the comparison on records, without training --------------------------------------------------------------

def _rec(**changes) -> dict:
    base = {"rank": 0, "world_size": 1, "forwards": 5, "backwards": 5, "inputs": {"[[32, 128], [32, 128]]": 5},
            "params": {"[[64], [64, 64], [512, 64]]": 1}, "attention": {"[[32, 2, 128, 32], [32, 2, 128, 32]]": 20}}
    return {**base, **changes}


def test_context_length_and_lost_attention_are_named() -> None:
    longer = _rec(inputs={"[[32, 256], [32, 256]]": 5})
    assert "context length 128 -> 256" in steps_contract.compare(_rec(), longer, 5)[0]
    hand_written = _rec(attention={})
    assert "no longer runs through" in steps_contract.compare(_rec(), hand_written, 5)[0]


def test_steps_counted_short_are_caught() -> None:
    # 10 real forward-backward passes reported as 5 steps
    assert len(steps_contract.compare(_rec(), _rec(forwards=10, backwards=10), 5)) == 2


def _execution(tmp_path: Path, record: dict | None, steps: int = 5) -> SimpleNamespace:
    log = tmp_path / "run.log"
    if record is not None:
        folder = steps_contract.record_dir(log)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rank0.json").write_text(json.dumps(record))
    return SimpleNamespace(metrics=SimpleNamespace(steps=steps), outcome=SimpleNamespace(log_path=log))


def test_a_run_without_its_record_is_tampered(tmp_path: Path) -> None:
    (reason,) = steps_contract.run_reasons({0: _rec()}, [_execution(tmp_path, None)])
    assert "record of the run's shapes and passes is missing" in reason
    assert steps_contract.run_reasons({0: _rec()}, [_execution(tmp_path / "ok", _rec())]) == []


def test_naming_the_recorder_is_tampered() -> None:
    assert steps_contract.source_reasons(f"import os\nos.environ['{steps_contract.RECORD_ENV}']\n")
    assert steps_contract.source_reasons("print('hello')\n") == []


def test_a_time_task_gets_no_recorder(tmp_path: Path) -> None:
    assert steps_contract.run_env(SimpleNamespace(metric=TIME), tmp_path, {}) == {}
    assert not (tmp_path / steps_contract.RECORD_DIR).exists()


def test_suspicion_on_the_steps_track() -> None:
    assert steps_contract.suspicious_reasons(100, 3.65, 3.70, 100, 0.1) == []
    assert "below 0.4 x the next record's 100 steps" in steps_contract.suspicious_reasons(39, 3.65, 3.70, 100, 0.1)[0]


# --- manifest, score, record, summary ----------------------------------------------------------------------

def _manifest(tmp_path: Path, extra: str = "", start_steps: str = "steps = 440", target_steps: str = "steps = 270",
              reference: str = "manifest") -> Path:
    (tmp_path / "a.py").write_text("")
    path = tmp_path / "t.toml"
    path.write_text(f'id = "t"\nsuite = "s"\ntarget_val_loss = 3.7\n{extra}\n'
                    f'[start]\nrecord = 1\nscript = {{ path = "a.py" }}\ntrain_time_ms = 20\n{start_steps}\n'
                    f'[target]\nrecord = 2\nscript = {{ path = "a.py" }}\ntrain_time_ms = 10\n{target_steps}\n'
                    f'[launch]\nnproc_per_node = 1\ntimeout_s = 60\n[reference]\nsource = "{reference}"\n')
    return path


def test_metric_is_time_by_default_and_steps_when_stated(tmp_path: Path) -> None:
    assert load_task(_manifest(tmp_path)).metric == TIME
    assert load_task(_manifest(tmp_path, 'metric = "steps"')).metric == STEPS


@pytest.mark.parametrize("extra, start_steps, target_steps, reference, key", [
    ('metric = "epochs"', "steps = 440", "steps = 270", "manifest", "'metric'"),
    ('metric = "steps"', "", "steps = 270", "manifest", "'start.steps'"),
    ('metric = "steps"', "steps = 270", "steps = 440", "manifest", "'target.steps'"),
    ('metric = "steps"', "steps = 440", "steps = 270", "calibrate", "'reference.source'"),
])
def test_bad_steps_manifests_name_the_key(tmp_path: Path, extra: str, start_steps: str, target_steps: str,
                                          reference: str, key: str) -> None:
    with pytest.raises(TaskError, match=f"t.toml: key {key}"):
        load_task(_manifest(tmp_path, extra, start_steps, target_steps, reference))


def test_fsr_over_steps_is_exact() -> None:
    sc = steps_score(440, 440, 270)
    assert (sc.fsr, sc.metric, exact_interval(sc)) == (0.0, STEPS, (0.0, 0.0))
    assert steps_score(270, 440, 270).fsr == 1.0
    assert steps_score(440 - 85, 440, 270).fsr == 0.5
    ref = Reference(26022, 15832, "manifest")
    assert score_task(STEPS, ref, 99999.0, 100, 150, 100).fsr == 1.0
    assert score_task(TIME, ref, 15832.0, 100, 150, 100).fsr == 1.0
    assert exact_interval(score_task(TIME, ref, 15832.0, None, None, None)) is None


def test_the_summary_shows_steps_and_an_exact_score() -> None:
    assert fsr_cell(1.0, 1.0, 1.0) == "1.00 exact"
    result = ItemResult(task="tiny03", suite="tiny-steps", agent="oracle", hints="0", seed=0, status="passed",
                        reasons=(), target_val_loss=3.7, t_start_ms=1.0, t_target_ms=0.5, reference_source="manifest",
                        artifact_dir="", val_loss=3.65, steps=100, speedup=1.5, fsr=1.0, fsr_low=1.0, fsr_high=1.0,
                        metric=STEPS, s_start=150, s_target=100)
    row = {**result.to_json(), "nodeid": "tiny03[h0-s0]"}
    assert "100 steps  150 steps  100 steps  1.500    1.00 exact" in summary_lines([row])[1]


@pytest.mark.parametrize("suite", ["tiny", "tiny-steps"])
def test_manifest_steps_are_the_scripts_steps(suite: str) -> None:
    """Steps come from what runs: each record's num_iterations (the slow end-to-end test runs them)."""
    for task in load_suite(find_suite(suite)):
        for rec in (task.start, task.target):
            found = re.search(r"num_iterations: int = (\d+)", rec.script.path.read_text())
            assert found and int(found.group(1)) == rec.steps, (task.id, rec.record)


def test_the_steps_suite_holds_the_optimiser_only_pairs() -> None:
    tasks = load_suite(find_suite("tiny-steps"))
    assert [(t.id, t.metric, t.start.steps, t.target.steps) for t in tasks] == [
        ("tiny01", STEPS, 440, 270), ("tiny03", STEPS, 150, 100)]
