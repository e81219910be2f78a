"""Compat fixes (tasks/compat.py) and their probe (execution/compat_probe.py), on our own stand-in of the FP8
construct (tests/compat_standins/), never on record text. The runs that compile with torch go through
subprocesses with a private inductor cache: a shared one can serve a graph compiled with the other fake."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_speedrun.errors import CompatError, TaskError
from pytest_speedrun.execution import compat_probe
from pytest_speedrun.execution.compat_probe import PROBE_SIGNATURES, PROBES, run_compat_probes
from pytest_speedrun.tasks.compat import FIXES, apply_fixes, fake_spans, fixes_for

HERE = Path(__file__).parent
STANDIN = HERE / "compat_standins" / "fp8_fake_strides.py"
TINY_RECORDS = sorted((HERE.parent / "tasks" / "tiny" / "records").glob("*.py"))
FIX = FIXES["fp8-fake-strides"]
STRIDE_TEXT = PROBE_SIGNATURES["fp8-fake-strides"]


def _op_source(*, real_tail: str = ".t()", register: str = "decorator", fake_return: str = "a.float(), b.float()",
               nested: bool = False) -> str:
    """A small script of our own with the construct in one of its spellings."""
    x, y = ("p", "q") if nested else ("a", "b")
    real = f"left = torch.mm({x}, {y})\nright = torch.mm({y}.t().contiguous(), {x}){real_tail}\nreturn left, right\n"
    if nested:  # a compiled inner function, returned through a call
        real = f"@torch.compile\ndef inner(p, q):\n{textwrap.indent(real, '    ')}\nreturn inner(a, b)\n"
    fake = f"def my_fake(a, b):\n    return {fake_return}\n"
    registration = {"decorator": f"@pair_op.register_fake\n{fake}",
                    "call": f"{fake}\npair_op.register_fake(my_fake)\n",
                    "library": f'@torch.library.register_fake("mine::pair")\n{fake}'}[register]
    return ('import torch\n\n\n@torch.library.custom_op("mine::pair", mutates_args=())\n'
            "def pair_op(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:\n"
            f"{textwrap.indent(real, '    ')}\n\n{registration}")


def _changed(before: str, after: str) -> list[int]:
    return [i + 1 for i, (x, y) in enumerate(zip(before.splitlines(), after.splitlines())) if x != y]


# --- the transformation --------------------------------------------------------------------------------------------

def test_the_stand_in_holds_the_construct() -> None:
    assert fixes_for(STANDIN.read_text()) == [FIX]


def test_the_fix_changes_only_the_fakes_return_and_parses() -> None:
    source = STANDIN.read_text()
    fixed, applied = apply_fixes(source, ["fp8-fake-strides"])
    ast.parse(fixed)
    assert applied == ("fp8-fake-strides",)
    assert len(source.splitlines()) == len(fixed.splitlines())
    changed = _changed(source, fixed)
    assert len(changed) == 1
    assert any(first <= changed[0] <= last for _, first, last in fake_spans(source))
    assert fixed.splitlines()[changed[0] - 1].endswith(".T.contiguous().T")  # the real op's own transposition


def test_the_fix_is_idempotent() -> None:
    fixed = FIX.apply(STANDIN.read_text())
    assert FIX.apply(fixed) == fixed
    assert not FIX.matches(fixed)
    assert apply_fixes(fixed, ["fp8-fake-strides"]) == (fixed, ())


@pytest.mark.parametrize("record", TINY_RECORDS, ids=lambda p: p.stem)
def test_scripts_without_the_construct_do_not_match(record: Path) -> None:
    source = record.read_text()
    assert fixes_for(source) == []
    assert apply_fixes(source, ["fp8-fake-strides"]) == (source, ())


@pytest.mark.parametrize("spelling", [
    {}, {"register": "call"}, {"register": "library"}, {"nested": True}, {"real_tail": ".T"},
    {"real_tail": ".transpose(0, 1)"}, {"real_tail": ".mT", "fake_return": "torch.empty_like(a), b @ b.t()"},
])
def test_other_names_and_spellings_still_match(spelling: dict) -> None:
    source = _op_source(**spelling)
    ast.parse(source)
    assert FIX.matches(source)
    fixed = FIX.apply(source)
    flip = spelling.get("real_tail", ".t()")
    assert f"{flip}.contiguous(){flip}" in fixed
    assert not FIX.matches(fixed)


def test_a_compound_fake_element_is_parenthesised() -> None:
    fixed = FIX.apply(_op_source(fake_return="a.float(), b.float() * 2"))
    assert "(b.float() * 2).t().contiguous().t()" in fixed


def test_a_fake_with_the_real_layout_is_left_alone() -> None:
    assert not FIX.matches(_op_source(fake_return="a.float(), b.t().contiguous().t().float()"))


def test_a_real_op_without_a_transposed_output_does_not_match() -> None:
    assert not FIX.matches(_op_source(real_tail=""))


def test_a_transposed_fake_of_a_dense_output_is_made_contiguous() -> None:
    source = _op_source(real_tail=".t().contiguous()", fake_return="a.float(), b.float().t().contiguous().t()")
    fixed = FIX.apply(source)
    assert "b.float().t().contiguous().t().contiguous()" in fixed
    assert not FIX.matches(fixed)


def test_a_construct_it_cannot_repair_raises_naming_the_line() -> None:
    source = _op_source(fake_return="helper(a, b)")
    assert FIX.matches(source)
    with pytest.raises(CompatError, match=r"line \d+: the fake of op 'mine::pair' returns 1 value\(s\)"):
        FIX.apply(source)
    assert issubclass(CompatError, TaskError)


def test_unknown_fix_names_and_unparsable_sources() -> None:
    with pytest.raises(CompatError, match="unknown compat fix 'nope' .known: fp8-fake-strides"):
        apply_fixes("x = 1\n", ["nope"])
    assert fixes_for("def broken(:\n") == []
    assert FIX.apply("def broken(:\n") == "def broken(:\n"


def test_every_fix_names_a_probe_that_exists() -> None:
    assert all(fix.probe in PROBES and fix.summary and fix.upstream for fix in FIXES.values())


def test_the_probe_carries_the_construct_the_fix_repairs() -> None:
    assert fixes_for(Path(compat_probe.__file__).read_text()) == [FIX]


# --- the probe's cache, with a stand-in interpreter -----------------------------------------------------------------

def _fake_python(folder: Path, torch_version: str = "2.13.0+cpu", answer: str = "") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    counter = folder / "probe_runs"
    answer = answer or '{"fp8-fake-strides": "AssertionError: expected size 4==4, stride 1==2 at dim=0"}'
    exe = folder / "python"
    exe.write_text(f"#!/bin/sh\nif [ \"$1\" = \"-c\" ]; then echo '[\"{folder}\", \"{torch_version}\"]'; exit 0; fi\n"
                   f"echo run >> {counter}\necho '{answer}'\n")
    exe.chmod(0o755)
    return exe, counter


def _runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_the_probe_runs_once_per_interpreter(tmp_path: Path) -> None:
    exe, counter = _fake_python(tmp_path / "a")
    first = run_compat_probes(str(exe), cache_dir=tmp_path / "cache")
    assert first == {"fp8-fake-strides": "AssertionError: expected size 4==4, stride 1==2 at dim=0"}
    assert run_compat_probes(str(exe), cache_dir=tmp_path / "cache") == first
    assert _runs(counter) == 1
    other, other_counter = _fake_python(tmp_path / "b", torch_version="2.7.1+cu126",
                                        answer='{"fp8-fake-strides": null}')
    assert run_compat_probes(str(other), cache_dir=tmp_path / "cache") == {"fp8-fake-strides": None}
    assert _runs(other_counter) == 1 and _runs(counter) == 1


def test_a_changed_interpreter_is_probed_again(tmp_path: Path) -> None:
    exe, counter = _fake_python(tmp_path / "a")
    run_compat_probes(str(exe), cache_dir=tmp_path / "cache")
    stat = exe.stat()
    os.utime(exe, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    run_compat_probes(str(exe), cache_dir=tmp_path / "cache")
    assert _runs(counter) == 2
    run_compat_probes(str(exe))  # no cache folder: always runs
    assert _runs(counter) == 3


def test_a_probe_that_cannot_run_is_not_cached(tmp_path: Path) -> None:
    exe, counter = _fake_python(tmp_path / "a", answer="not json")
    first = run_compat_probes(str(exe), cache_dir=tmp_path / "cache")
    assert first["fp8-fake-strides"].startswith("the compat probe failed in")
    run_compat_probes(str(exe), cache_dir=tmp_path / "cache")
    assert _runs(counter) == 2
    assert run_compat_probes(str(tmp_path / "missing"), cache_dir=tmp_path / "cache")["fp8-fake-strides"].startswith(
        "cannot run")


# --- real torch: the probe here, the stand-in as it is and fixed -------------------------------------------------

def test_the_probe_fails_here_with_the_stride_assertion(tmp_path: Path) -> None:
    """torch 2.13's CPU build checks the fake's strides (inductor's size asserts), as the GPU host's 2.11 did."""
    answer = run_compat_probes(sys.executable, timeout_s=300, cache_dir=tmp_path)
    assert STRIDE_TEXT in (answer["fp8-fake-strides"] or ""), answer
    assert "stride 1==32 at dim=0" in answer["fp8-fake-strides"]


def _run_script(path: Path, work: Path) -> subprocess.CompletedProcess:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor"), "PYTHONPATH": ""}
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, cwd=work,
                          timeout=600, stdin=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="module")
def standin_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess]:
    """The stand-in as it is and fixed, and the probe's own construct fixed, each run once."""
    root = tmp_path_factory.mktemp("compat")
    fixed_standin = root / "standin_fixed.py"
    fixed_standin.write_text(FIX.apply(STANDIN.read_text()))
    fixed_probe = root / "probe_fixed.py"
    fixed_probe.write_text(FIX.apply(Path(compat_probe.__file__).read_text()))
    return {name: _run_script(path, root / name) for name, path in
            (("as-is", STANDIN), ("fixed", fixed_standin), ("probe-fixed", fixed_probe))}


@pytest.mark.slow
def test_the_stand_in_crashes_with_the_records_assertion(standin_runs: dict) -> None:
    run = standin_runs["as-is"]
    assert run.returncode != 0
    assert "AssertionError: expected size 64==64, stride 1==32 at dim=0" in run.stderr
    assert "Error in op: torch.ops.compat_standin.fp8_proj_grads.default" in run.stderr
    assert "standin: step 1/" not in run.stdout  # it dies at its first backward step


@pytest.mark.slow
def test_the_fixed_stand_in_trains(standin_runs: dict) -> None:
    run = standin_runs["fixed"]
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines()[-1] == "standin: ok"


@pytest.mark.slow
def test_the_fixed_probe_passes(standin_runs: dict) -> None:
    run = standin_runs["probe-fixed"]
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == '{"fp8-fake-strides": null}'
