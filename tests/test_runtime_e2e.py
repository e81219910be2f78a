"""A task's runtime end to end: a stand-in runtime built offline with uv, then a pytest run whose task names it.

The task's record is a pure-Python fake (no torch import) that prints the interpreter it runs in, so the run log
shows where it really ran; the result record, JUnit and the terminal summary must say the same.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_runtime_build import write_wheel

from fakes import fake_record, manifest
from pytest_speedrun.errors import RuntimeBuildError
from pytest_speedrun.execution import runtime_build as rb
from pytest_speedrun.results import store
from pytest_speedrun.tasks.runtimes import load_runtime

pytest_plugins = ["pytester"]

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
BASE = os.path.realpath(sys.executable)  # a pyenv shim's or a venv's real base interpreter
RUNTIME = "standin"
# The fake record, first printing the interpreter that runs it (the run log is the witness).
WHERE_RECORD = 'import sys\nprint("exe", sys.executable, flush=True)\n' + fake_record(0.1)


def _uv_or_skip() -> None:
    try:
        rb.find_uv()
    except RuntimeBuildError as exc:
        pytest.skip(f"uv is needed to build a runtime: {exc}")


@pytest.fixture
def mini(pytester: pytest.Pytester) -> Path:
    """Suite 'mini': one task whose manifest names runtime 'standin' and whose references come from the manifest
    (no calibration), and the runtime's definition beside it."""
    suite = pytester.path / "suites" / "mini"
    (suite / "records").mkdir(parents=True)
    (suite / "runtimes").mkdir()
    for k in (1, 2):
        (suite / "records" / f"record_{k}.py").write_text(WHERE_RECORD)
    text = manifest("mini01", "records/record_1.py", "records/record_2.py", reference="manifest", hints=False,
                    t_start=120, t_target=100)  # the fakes train ~0.1 s: references of their size
    text = text.replace("[launch]\n", f'[launch]\nruntime = "{RUNTIME}"\n', 1)
    (suite / "mini01.toml").write_text(text)
    (suite / "runtimes" / f"{RUNTIME}.toml").write_text(
        f'description = "stand-in runtime for the end-to-end test"\npython = "{PYTHON}"\ntorch = "0.0.1"\n'
        'requirements = ["torch==0.0.1"]\n')
    return suite


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of the test's own (a built runtime must not reach another test), uv offline with a temp cache."""
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    return tmp_path / "cache"


def _build(suite: Path, cache: Path, tmp_path: Path) -> Path:
    _uv_or_skip()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    write_wheel(wheels, "torch", "0.0.1", {"torch/__init__.py": "__version__ = '0.0.1'\n"})
    rb.build_runtime(load_runtime(suite / "runtimes" / f"{RUNTIME}.toml"), cache, base_python=BASE,
                     wheels_dir=wheels, offline=True, log=lambda _: None)
    python = rb.built_python(cache, RUNTIME)
    assert python is not None
    return python


def _run(pytester: pytest.Pytester, suite: Path, cache: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest(f"--speedrun-suite={suite}", f"--speedrun-cache-dir={cache}", "--speedrun-agent=baseline",
                              "-p", "no:cacheprovider", *args)


def _junit(path: Path) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in ET.parse(path).getroot().iter("property")}


def test_a_task_of_a_built_runtime_runs_in_its_interpreter(pytester, mini, cache, tmp_path) -> None:
    python = _build(mini, cache, tmp_path)
    xml = pytester.path / "r.xml"
    result = _run(pytester, mini, cache, f"--junitxml={xml}")
    result.assert_outcomes(passed=1)
    (record,) = store.read_records(pytester.path / ".speedrun")
    assert record["python"] == str(python)
    assert (record["runtime"], record["runtime_kind"], record["torch"]) == (RUNTIME, "built", "0.0.1")
    log = (Path(record["artifact_dir"]) / "run.log").read_text()
    assert f"exe {python}\n" in log  # the record itself ran there, not only the record says so
    props = _junit(xml)
    assert props["python"] == str(python) and props["runtime_kind"] == "built"
    result.stdout.fnmatch_lines([f"*runtime {RUNTIME}: built, torch 0.0.1 ({python}): mini01*"])


def test_an_unbuilt_runtime_runs_on_the_current_interpreter_and_says_so(pytester, mini, cache) -> None:
    xml = pytester.path / "r.xml"
    result = _run(pytester, mini, cache, f"--junitxml={xml}")
    result.assert_outcomes(passed=1)
    (record,) = store.read_records(pytester.path / ".speedrun")
    assert record["runtime"] == RUNTIME and record["runtime_kind"] == "current"
    assert record["python"] == sys.executable and record["torch"] != "0.0.1"
    assert f"exe {sys.executable}\n" in (Path(record["artifact_dir"]) / "run.log").read_text()
    assert _junit(xml)["runtime_kind"] == "current"
    result.stdout.fnmatch_lines([f"*runtime {RUNTIME}: current, torch {record['torch']} ({sys.executable}): mini01*"])


def test_a_runtime_mapped_to_a_missing_interpreter_is_a_one_line_usage_error(pytester, mini, cache) -> None:
    result = _run(pytester, mini, cache, f"--speedrun-runtime={RUNTIME}=/no/such/python")
    assert result.ret != 0
    text = result.stdout.str() + result.stderr.str()
    (error,) = [line for line in result.stderr.lines if line.strip()]
    assert error.startswith("ERROR: --speedrun-runtime=") and "/no/such/python" in error
    assert f"runtime build {RUNTIME}" in error and "Traceback" not in text
