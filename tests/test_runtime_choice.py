"""The runtime an item runs in, and its compat fixes (execution/runtime.py), on a stand-in suite.

The stand-in suite's runtime `standin` expects torch 0.0.1; "interpreters" are small shell scripts that answer
the torch-version question like a real interpreter would, so every branch of the choice is exercised without
building anything. The compat construct is the project's own CPU stand-in (tests/compat_standins/).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from fakes import fake_record, manifest
from pytest_speedrun.errors import MissingInput, UsageError
from pytest_speedrun.execution import runtime_build
from pytest_speedrun.execution.runtime import RuntimeChooser, materialise
from pytest_speedrun.judging.status import BUILT, CURRENT, MAPPED, PYTHON_OPTION
from pytest_speedrun.tasks.compat import FIXES
from pytest_speedrun.tasks.manifest import find_suite, load_suite, load_task

STANDIN = Path(__file__).resolve().parent / "compat_standins" / "fp8_fake_strides.py"
FIX = "fp8-fake-strides"
RUNTIME = 'description = "stand-in"\npython = "3.12"\ntorch = "0.0.1"\nrequirements = ["torch==0.0.1"]\n'


def fake_python(path: Path, torch: str) -> Path:
    """An 'interpreter' whose torch is `torch` (it answers `python -c ...` with the version)."""
    path.write_text(f"#!/bin/sh\necho {torch}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def standin_suite(root: Path, *, target: str | None = None, compat: tuple[str, ...] = ()) -> Path:
    """Suite `mini` with one task mini01 in runtime `standin`; its target script is `target` (text) if given."""
    suite = root / "mini"
    (suite / "records").mkdir(parents=True)
    (suite / "runtimes").mkdir()
    lines = RUNTIME + (f"compat = {list(compat)!r}\n".replace("'", '"') if compat else "")
    (suite / "runtimes" / "standin.toml").write_text(lines)
    (suite / "records" / "record_1.py").write_text(fake_record(0.1))
    (suite / "records" / "record_2.py").write_text(target if target is not None else fake_record(0.05))
    text = manifest("mini01", "records/record_1.py", "records/record_2.py", reference="manifest", hints=False)
    (suite / "mini01.toml").write_text(text.replace("[launch]\n", '[launch]\nruntime = "standin"\n'))
    return suite


def chooser(tmp_path: Path, probe=None, **kw) -> RuntimeChooser:
    calls: list[str] = []

    def counting(python: str) -> dict[str, str | None]:
        calls.append(python)
        return probe(python) if probe else {FIX: None}

    c = RuntimeChooser(cache_dir=tmp_path / "cache", probe=counting, **kw)
    c.calls = calls  # type: ignore[attr-defined]
    return c


def task_of(suite: Path):
    return load_task(suite / "mini01.toml")


def test_a_task_naming_no_runtime_runs_in_pytests_interpreter(tmp_path: Path) -> None:
    tiny01 = load_suite(find_suite("tiny"))[0]
    choice = chooser(tmp_path).choose(tiny01)
    assert (choice.runtime, choice.kind, choice.python, choice.compat) == ("", CURRENT, sys.executable, ())
    assert choice.torch  # read from the interpreter's package metadata


def test_a_runtime_not_built_runs_on_the_current_interpreter_only_where_its_probes_pass(tmp_path: Path) -> None:
    c = chooser(tmp_path, python=str(fake_python(tmp_path / "py", "2.13.0")))
    choice = c.choose(task_of(standin_suite(tmp_path)))
    assert choice.kind == CURRENT and choice.compat == ()
    assert "standin not built: current torch 2.13.0, probes passed" in choice.note
    assert c.calls == []  # no construct in its scripts: nothing to probe


def test_a_current_interpreter_without_torch_skips_naming_the_build_command(tmp_path: Path) -> None:
    c = chooser(tmp_path, python=str(fake_python(tmp_path / "py", "")))
    with pytest.raises(MissingInput, match="pytest-speedrun runtime build standin"):
        c.choose(task_of(standin_suite(tmp_path)))


def test_a_mapped_interpreter_is_used_and_must_have_the_runtimes_torch(tmp_path: Path) -> None:
    good = fake_python(tmp_path / "good", "0.0.1+cpu")
    choice = chooser(tmp_path, mapped={"standin": str(good)}).choose(task_of(standin_suite(tmp_path)))
    assert (choice.kind, choice.python, choice.torch) == (MAPPED, str(good), "0.0.1+cpu")
    bad = fake_python(tmp_path / "bad", "2.13.0")
    with pytest.raises(UsageError, match=r"standin=.*bad: that interpreter has torch 2.13.0, runtime standin needs "
                                         r"0.0.1"):
        chooser(tmp_path, mapped={"standin": str(bad)}).choose(task_of(standin_suite(tmp_path / "b")))


def test_a_built_runtime_comes_before_the_current_interpreter(tmp_path: Path, monkeypatch) -> None:
    built = fake_python(tmp_path / "built", "0.0.1")
    monkeypatch.setattr(runtime_build, "built_python", lambda cache, name: built if name == "standin" else None)
    choice = chooser(tmp_path).choose(task_of(standin_suite(tmp_path)))
    assert (choice.kind, choice.python) == (BUILT, str(built))


def test_speedrun_python_overrides_every_runtime(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(runtime_build, "built_python", lambda cache, name: tmp_path / "never")
    mine = fake_python(tmp_path / "mine", "2.11.0")
    c = chooser(tmp_path, python=str(mine), python_override=True, mapped={"standin": "/nope"})
    assert c.choose(task_of(standin_suite(tmp_path))).kind == PYTHON_OPTION


def test_a_failing_probe_with_a_fix_applies_it_to_the_script_that_has_the_construct(tmp_path: Path) -> None:
    suite = standin_suite(tmp_path, target=STANDIN.read_text())
    c = chooser(tmp_path, python=str(fake_python(tmp_path / "py", "2.13.0")), probe=lambda p: {FIX: "expected size"})
    task = task_of(suite)
    choice = c.choose(task)
    assert choice.compat == (FIX,) and f"compat: {FIX}" in choice.note
    fixed = materialise(task, choice, tmp_path / "cache")
    assert fixed.start.script.path == task.start.script.path  # no construct: untouched
    assert fixed.target.script.path != task.target.script.path
    assert fixed.target.script.path.read_text() == FIXES[FIX].apply(STANDIN.read_text())
    assert materialise(task, choice, tmp_path / "cache").target.script.path == fixed.target.script.path  # cached


def test_a_passing_probe_leaves_the_pinned_script_as_it_is(tmp_path: Path) -> None:
    suite = standin_suite(tmp_path, target=STANDIN.read_text())
    c = chooser(tmp_path, python=str(fake_python(tmp_path / "py", "2.13.0")), probe=lambda p: {FIX: None})
    choice = c.choose(task_of(suite))
    assert choice.compat == () and len(c.calls) == 1
    c.choose(task_of(suite))
    assert len(c.calls) == 1  # one probe per interpreter and session


def test_a_runtime_that_lists_the_fix_applies_it_without_probing(tmp_path: Path) -> None:
    suite = standin_suite(tmp_path, target=STANDIN.read_text(), compat=(FIX,))
    c = chooser(tmp_path, python=str(fake_python(tmp_path / "py", "2.13.0")))
    assert c.choose(task_of(suite)).compat == (FIX,) and c.calls == []


def test_the_nanogpt_runtimes_list_the_fix_where_the_issue_says(tmp_path: Path) -> None:
    from pytest_speedrun.tasks.runtimes import suite_runtimes

    runtimes = suite_runtimes(find_suite("nanogpt"))
    assert runtimes["torch-2.7.1"].compat == (FIX,)  # record 19, task18's target, was written for a laxer nightly
    assert runtimes["torch-2.7-nightly-2025-01"].compat == ()  # the faithful runtime needs no fix


@pytest.mark.skipif(not os.path.exists("/proc/mounts"), reason="reads /proc/mounts")
def test_slurm_refuses_a_runtime_interpreter_off_the_shared_mounts(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pytest_speedrun.execution.runtime import RuntimeChoice
    from pytest_speedrun.execution.slurm import check_visible_to_nodes

    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\nserver:/shared /shared nfs4 rw 0 0\ntmpfs /scratch tmpfs rw 0 0\n")
    settings = SimpleNamespace(slurm=SimpleNamespace(folder=Path("/shared/jobs")), results_dir=Path("/shared/r"))
    local = RuntimeChoice("t271", "/scratch/cache/runtimes/t271/bin/python", BUILT, "2.7.1")
    with pytest.raises(UsageError, match=r"runtime t271: /scratch/cache/runtimes/t271/bin/python lies on /scratch "
                                         r"\(tmpfs\), which Slurm nodes may not see"):
        check_visible_to_nodes(local, settings, mounts)
    check_visible_to_nodes(RuntimeChoice("t271", "/shared/envs/t271/bin/python", MAPPED, "2.7.1"), settings, mounts)
    check_visible_to_nodes(RuntimeChoice("", "/scratch/py", CURRENT, "2.13"), settings, mounts)  # not checked


def test_the_doctor_gives_a_verdict_per_runtime_with_task_ranges(tmp_path: Path) -> None:
    from pytest_speedrun.execution.doctor_runtimes import check_runtimes

    suite = standin_suite(tmp_path, target=STANDIN.read_text())
    c = chooser(tmp_path, python=str(fake_python(tmp_path / "py", "2.13.0")), probe=lambda p: {FIX: "expected size"})
    [(name, status, detail, fix)] = check_runtimes(load_suite(suite), c, tmp_path / "cache", gpus=[])
    assert (name, status) == ("runtime standin", "ok")
    assert detail.startswith("mini01: this interpreter") and f"compat fix {FIX}" in detail
    assert fix == "the faithful runtime: pytest-speedrun runtime build standin"
    bare = chooser(tmp_path, python=str(fake_python(tmp_path / "none", "")))
    [(_, status, detail, _)] = check_runtimes(load_suite(suite), bare, tmp_path / "cache", gpus=[])
    assert status == "FAIL" and "pytest-speedrun runtime build standin" in detail


def test_task_ranges_and_the_driver_check() -> None:
    from types import SimpleNamespace

    from pytest_speedrun.execution.doctor_runtimes import cuda_row, driver_supports, task_ranges
    from pytest_speedrun.tasks.runtimes import suite_runtimes

    ids = ["task01", "task02", "task03", "task05", "task07", "task08", "task18"]
    assert task_ranges(ids) == "task01–task03, task05, task07–task08, task18"
    assert driver_supports("580.159", "13.0") and driver_supports("535.104", "12.6")
    assert driver_supports("470.82", "12.6") is False and driver_supports("x", "12.6") is None
    t271 = suite_runtimes(find_suite("nanogpt"))["torch-2.7.1"]
    assert cuda_row(t271, [SimpleNamespace(driver="580.159")]) is None
    assert "cannot run" in cuda_row(t271, [SimpleNamespace(driver="470.82")])[1]
