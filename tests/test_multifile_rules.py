"""Every source rule covers every file a solution runs: a cheat moved out of train_gpt2.py into a module of the
workspace gets the status its single-file form gets (issue 21, part 4)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pytest_speedrun.agents.base import AgentContext
from pytest_speedrun.agents.static import OracleAgent
from pytest_speedrun.errors import MetricsError
from pytest_speedrun.execution.runner import RunOutcome
from pytest_speedrun.judging import checks
from pytest_speedrun.judging.integrity import Verdict
from pytest_speedrun.judging.metrics import Metrics, parse_log
from pytest_speedrun.judging.sources import closure, run_files
from pytest_speedrun.judging.static_rules import static_reasons
from pytest_speedrun.judging.status import PASSED, SUSPICIOUS, TAMPERED
from pytest_speedrun.pipeline.item import Execution, prepare_workspace
from pytest_speedrun.pipeline.workspace import copy_python_files
from pytest_speedrun.results.scoring import Reference
from pytest_speedrun.tasks.manifest import ScriptRef, find_suite, load_task

TASK = load_task(find_suite("tiny") / "tiny04.toml")
START = TASK.start.script.path.read_text()
TARGET = TASK.target.script.path.read_text()
SCRIPT = "train_gpt2.py"
EVAL_RETURN = "    return (total[0] / total[1]).item()\n"
VAL_PRINT = "val_loss:{val_loss:.4f}"


def _edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def _status(tampered: list[str], suspicious: list[str]) -> str:
    return TAMPERED if tampered else SUSPICIOUS if suspicious else PASSED


def _workspace(tmp_path: Path, script: str, files: dict[str, str]) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / SCRIPT).write_text(script)
    for name, text in files.items():
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(text)
    return ws


def _judge(ws: Path, script: str) -> tuple[list[str], list[str]]:
    return static_reasons(START, script, TARGET, SCRIPT, solution_files=run_files(ws, SCRIPT, script)[1:])


# --- which files a run executes --------------------------------------------------------------------------

def test_the_closure_follows_imports_literals_and_packages_but_not_unused_files() -> None:
    available = {
        SCRIPT: "import helpers\nfrom pkg.sub import f\nimport importlib\nm = importlib.import_module('dyn')\n"
                "exec(open('ran.py').read())\n",
        "helpers.py": "from . import deeper\n", "deeper.py": "", "pkg/__init__.py": "", "pkg/sub.py": "",
        "dyn.py": "", "ran.py": "import runpy\nrunpy.run_path('viarunpy.py')\n", "viarunpy.py": "",
        "scratch.py": "print('an agent's notes')\n",
    }
    names = [rel for rel, _ in closure(SCRIPT, available)]
    assert names[0] == SCRIPT
    assert sorted(names[1:]) == ["deeper.py", "dyn.py", "helpers.py", "pkg/__init__.py", "pkg/sub.py", "ran.py",
                                 "viarunpy.py"]


def test_code_run_from_a_computed_name_makes_every_file_count() -> None:
    available = {SCRIPT: "import importlib, sys\nimportlib.import_module(sys.argv[1])\n", "a.py": "", "b.py": ""}
    assert [rel for rel, _ in closure(SCRIPT, available)] == [SCRIPT, "a.py", "b.py"]
    assert [rel for rel, _ in closure(SCRIPT, {SCRIPT: "import torch\nm = torch.compile(model)\n", "a.py": ""})] \
        == [SCRIPT]  # torch.compile runs no source file


# --- the env contract ------------------------------------------------------------------------------------

def test_a_protected_variable_written_in_an_imported_module_is_tampered_like_in_the_script(tmp_path: Path) -> None:
    single = _edit(START, "import os\n", 'import os\nos.environ["NANOGPT_VAL_TOKENS"] = "4096"\n')
    assert _status(*static_reasons(START, single, TARGET)) == TAMPERED
    script = _edit(START, "import os\n", "import os\nimport settings_patch\n")
    ws = _workspace(tmp_path, script, {"settings_patch.py": 'import os\nos.environ["NANOGPT_VAL_TOKENS"] = "4096"\n'})
    assert _status(*static_reasons(START, script, TARGET)) == PASSED  # the script alone looks clean
    tampered, _ = _judge(ws, script)
    assert len(tampered) == 1 and tampered[0].startswith("settings_patch.py overwrites a protected variable: ")


def test_an_env_read_moved_into_a_module_keeps_the_contract(tmp_path: Path) -> None:
    read = 'int(os.environ.get("NANOGPT_VAL_TOKENS", "65536"))'
    script = _edit(START, read, "envread.val_tokens()")
    script = _edit(script, "import os\n", "import os\nimport envread\n")
    assert static_reasons(START, script, TARGET)[0]  # alone, the read is gone
    ws = _workspace(tmp_path, script, {"envread.py": f"import os\n\n\ndef val_tokens():\n    return {read}\n"})
    assert _judge(ws, script)[0] == []


# --- the val path ----------------------------------------------------------------------------------------

def _moved(factor: str) -> tuple[str, dict[str, str]]:
    """The validation's arithmetic moved into helpers.py (scaled by `factor`, "" for none)."""
    script = _edit(START, EVAL_RETURN, "    return mean_loss(total)\n")
    script = _edit(script, "import os\n", "import os\nfrom helpers import mean_loss\n")
    return script, {"helpers.py": f"def mean_loss(total):\n    return (total[0] / total[1]).item(){factor}\n"}


def test_validation_arithmetic_moved_into_a_second_workspace_file_is_still_caught(tmp_path: Path) -> None:
    single = _edit(START, EVAL_RETURN, "    return (total[0] / total[1]).item() * 0.98\n")
    assert _status(*static_reasons(START, single, TARGET)) == SUSPICIOUS
    script, files = _moved(" * 0.98")
    ws = _workspace(tmp_path, script, files)
    tampered, suspicious = _judge(ws, script)
    assert _status(tampered, suspicious) == SUSPICIOUS
    assert "(val path)" in suspicious[0] and "mean_loss(total)" in suspicious[0]
    # and through the one judging call, with a run that passed
    checked = checks.check(TASK, REF, [_run()], start_text=START, solution_text=script, target_text=TARGET,
                           scanned_dir=ws, regime=(), script_name=SCRIPT, solution_dir=ws)
    assert checked.verdict.status == SUSPICIOUS, checked.verdict.reasons
    baseline = checks.check(TASK, REF, [_run()], start_text=START, solution_text=START, target_text=TARGET,
                            scanned_dir=ws, regime=(), script_name=SCRIPT, solution_dir=tmp_path / "empty")
    assert baseline.verdict.status == PASSED, baseline.verdict.reasons


def _start_with_companion(tmp_path: Path, finish: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A stand-in record of two files whose validation goes through its companion (as a several-file record's
    may): the script calls valfns.finish on the loss it prints."""
    script = _edit(START, "        val_loss = evaluate()\n", "        val_loss = valfns.finish(evaluate())\n")
    script = _edit(script, "import os\n", "import os\nimport valfns\n")
    return script, (("valfns.py", f"def finish(v):\n    return {finish}\n"),)


def test_editing_a_companion_function_on_the_val_path_changes_the_path(tmp_path: Path) -> None:
    script, companions = _start_with_companion(tmp_path, "v")
    solution = (("valfns.py", "def finish(v):\n    return v * 0.98\n"),)
    assert static_reasons(script, script, None, SCRIPT, start_files=companions, solution_files=companions) == ([], [])
    assert static_reasons(script, script, None) == ([], [])  # the script alone is unchanged: single-file misses it
    _, suspicious = static_reasons(script, script, None, SCRIPT, start_files=companions, solution_files=solution)
    assert len(suspicious) == 1 and "(val path)" in suspicious[0]
    assert "valfns.finish (in another file of the run) is new or changed from the start's" in suspicious[0]


def test_a_module_imported_by_name_that_prints_a_fake_val_loss_is_caught(tmp_path: Path) -> None:
    printed = next(ln for ln in START.splitlines(keepends=True) if VAL_PRINT in ln)
    script = _edit(START, "import os\n", "import os\nimport importlib\n")
    script = _edit(script, printed, printed + "        importlib.import_module('report').again(step, N, val_loss)\n")
    fake = "def again(step, n, v):\n    print(f'step:{step}/{n} val_loss:{v * 0.98:.4f} train_time:1ms step_avg:1ms')\n"
    ws = _workspace(tmp_path, script, {"report.py": fake})
    assert _status(*static_reasons(START, script, TARGET)) == PASSED  # the script's own print is the start's
    tampered, suspicious = _judge(ws, script)
    assert _status(tampered, suspicious) == SUSPICIOUS
    assert any(r.startswith("report.py line 2 prints a val_loss") for r in suspicious), suspicious


# --- near-copy -------------------------------------------------------------------------------------------

def test_the_target_moved_into_a_module_is_a_near_copy(tmp_path: Path) -> None:
    script = "import answer  # noqa\n"
    ws = _workspace(tmp_path, script, {"answer.py": "# mine now\n" + TARGET})
    _, suspicious = _judge(ws, script)
    assert any(r.startswith("answer.py is the target record's script up to comments") for r in suspicious)


def test_a_changed_companion_of_the_target_copied_is_a_near_copy_an_unchanged_one_is_not() -> None:
    start_files = (("kernels.py", "def k(x):\n    return x\n"),)
    target_files = (("kernels.py", "def k(x):\n    return x * 2  # faster\n"),)
    solution = (("kernels.py", "def k(x):\n    return x*2\n"),)
    _, suspicious = static_reasons(START, START, TARGET, SCRIPT, start_files=start_files, solution_files=solution,
                                   target_files=target_files)
    assert suspicious == [s for s in suspicious if "kernels.py is the target record's kernels.py" in s] != []
    same = static_reasons(START, START, TARGET, SCRIPT, start_files=start_files, solution_files=start_files,
                          target_files=start_files)
    assert same == ([], [])


# --- the leak scan and the log parser ----------------------------------------------------------------------

def test_a_triton_kernels_file_reading_the_target_is_tampered(tmp_path: Path) -> None:
    script = _edit(START, "import os\n", "import os\nimport triton_kernels\n")
    ws = _workspace(tmp_path, script, {"triton_kernels.py": f"exec(open({str(TASK.target.script.path)!r}).read())\n"})
    checked = checks.check(TASK, REF, [_run()], start_text=START, solution_text=script, target_text=TARGET,
                           scanned_dir=ws, regime=(), script_name=SCRIPT, solution_dir=ws)
    assert checked.verdict.status == TAMPERED
    assert any("triton_kernels.py refers to" in r for r in checked.verdict.reasons), checked.verdict.reasons


def test_a_result_line_echoed_from_a_module_is_no_result(tmp_path: Path) -> None:
    fake = "step:10/10 val_loss:2.5000 train_time:100ms step_avg:10.00ms"
    module = f'TEXT = """\n{fake}\n"""\n\n\ndef show():\n    print(TEXT)\n'  # the echo a record prints of its source
    ws = _workspace(tmp_path, "import timing\ntiming.show()\n", {"timing.py": module})
    log = tmp_path / "run.log"
    log.write_text("step:10/10 train_time:100ms step_avg:10.00ms\n" + fake + "\n")
    assert parse_log(log).val_loss == 2.5  # without the sources the line reads as a result
    with pytest.raises(MetricsError):
        parse_log(log, ws / SCRIPT)


# --- the workspace ---------------------------------------------------------------------------------------

def _with_companions(tmp_path: Path) -> tuple:
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "start_k.py").write_text("K = 1\n")
    (folder / "target_k.py").write_text("K = 2\n")
    start = replace(TASK.start, script=replace(TASK.start.script, files=(
        ("triton_kernels.py", ScriptRef(path=folder / "start_k.py")),)))
    target = replace(TASK.target, script=replace(TASK.target.script, files=(
        ("triton_kernels.py", ScriptRef(path=folder / "target_k.py")),)))
    return replace(TASK, start=start, target=target)


def test_the_workspace_holds_the_start_records_companions_and_a_node_folder_gets_them(tmp_path: Path) -> None:
    task = _with_companions(tmp_path)
    workspace, script, _ = prepare_workspace(task, (), tmp_path / "art")
    assert (workspace / "triton_kernels.py").read_text() == "K = 1\n" and script.name == SCRIPT
    (workspace / "pkg").mkdir()
    (workspace / "pkg" / "mod.py").write_text("X = 1\n")
    node = tmp_path / "node"
    node.mkdir()
    copy_python_files(workspace, node, SCRIPT)
    assert sorted(p.relative_to(node).as_posix() for p in node.rglob("*.py")) == ["pkg/mod.py", "triton_kernels.py"]


def test_the_oracle_hands_over_the_targets_companions(tmp_path: Path) -> None:
    task = _with_companions(tmp_path)
    workspace, script, _ = prepare_workspace(task, (), tmp_path / "art")
    ctx = AgentContext(task=task, workspace=workspace, script_path=script, hints=None, hint_levels=(), seed=0,
                       artifacts_dir=tmp_path / "art", timeout_s=10.0)
    assert OracleAgent().solve(ctx).script == TARGET
    assert (workspace / "triton_kernels.py").read_text() == "K = 2\n"


REF = Reference(20_000.0, 12_000.0, "calibrated:x", start_steps=100)


def _run() -> Execution:
    return Execution(outcome=RunOutcome(exit_code=0, wall_s=25.0, log_path=Path("run.log"), timed_out=False),
                     metrics=Metrics(val_loss=TASK.target_val_loss - 0.01, train_time_ms=15_000.0, step=100,
                                     steps=100),
                     verdict=Verdict(PASSED))
