"""Results store, resume, repeats, aggregates and cumulative mode, through real pytest runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fakes import write_suite
from pytest_speedrun.agents.static import BaselineAgent, OracleAgent
from pytest_speedrun.pipeline.item import config_key
from pytest_speedrun.results import store as results
from pytest_speedrun.tasks.manifest import load_task

pytest_plugins = ["pytester"]


def _records(pytester: pytest.Pytester) -> list[dict]:
    return results.read_records(pytester.path / ".speedrun")


def test_resume_reruns_nothing_and_marks_items_resumed(run, pytester: pytest.Pytester) -> None:
    run("--speedrun-agent=oracle").assert_outcomes(passed=2)
    first = _records(pytester)
    result = run("--speedrun-agent=oracle", "--speedrun-resume", "--junitxml=r.xml")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["mini01[[]h0-s0[]]*passed (resumed)*", "*2 resumed from the store*"])
    again = _records(pytester)
    assert len(again) == 2 * len(first)
    assert all(r["resumed"] for r in again[2:])
    assert [r["artifact_dir"] for r in again[2:]] == [r["artifact_dir"] for r in first]  # no new run
    props = {p.get("name"): p.get("value") for p in ET.parse(pytester.path / "r.xml").getroot().iter("property")}
    assert props["resumed"] == "True"


def test_resume_misses_when_any_key_component_changes(tmp_path: Path) -> None:
    suite = write_suite(tmp_path)
    task = load_task(suite / "mini01.toml")
    base = config_key(task, OracleAgent(), (), 0)
    assert config_key(task, OracleAgent(), (), 0) == base
    assert config_key(task, BaselineAgent(), (), 0) != base
    assert config_key(task, OracleAgent(), (1,), 0) != base
    assert config_key(task, OracleAgent(), (), 1) != base
    assert config_key(task, OracleAgent(), (), 0, repeats=3) != base
    assert config_key(load_task(suite / "mini02.toml"), OracleAgent(), (), 0) != base

    class Configured(OracleAgent):
        config = {"model": "m", "scaffold": "aide", "params": {"n0": 3}}
    assert config_key(task, Configured(), (), 0) != base
    record_1 = suite / "records" / "record_1.py"
    record_1.write_text(record_1.read_text() + "\n# changed\n")
    assert config_key(task, OracleAgent(), (), 0) != base


def test_agent_errors_are_retried_on_resume(run, pytester: pytest.Pytester) -> None:
    run("--speedrun-agent=command:exit 1", "-k", "mini01").assert_outcomes(failed=1)
    result = run("--speedrun-agent=command:exit 1", "-k", "mini01", "--speedrun-resume")
    result.assert_outcomes(failed=1)
    assert not any(r.get("resumed") for r in _records(pytester))


def test_repeats_use_the_mean_time_and_a_t_test(run, pytester: pytest.Pytester) -> None:
    result = run("--speedrun-agent=oracle", "--speedrun-repeats=3", "-k", "mini02")
    result.assert_outcomes(passed=1)
    (record,) = _records(pytester)
    assert record["repeats"] == 3 and len(record["train_times_ms"]) == 3
    assert record["train_time_ms"] == pytest.approx(sum(record["train_times_ms"]) / 3)
    assert record["p_value"] == 0.0  # identical losses below the target: certain
    assert (Path(record["artifact_dir"]) / "run-2.log").exists()


def test_repeats_fail_when_the_mean_loss_is_not_significantly_below_target(run) -> None:
    # A solution whose loss straddles the target from seed to seed: mean below it, but not at p < 0.01.
    sed = ("command:sed -i \"s/FINAL_LOSS = 1.95/FINAL_LOSS = 1.9 if int(os.environ['SPEEDRUN_SEED']) % 2 "
           "else 2.05/\" \"$SPEEDRUN_SCRIPT\"")
    result = run(f"--speedrun-agent={sed}", "--speedrun-repeats=2", "-k", "mini02")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*status invalid: mean val_loss * over 2 runs is not below the target 2.0000*"])


def test_the_record_crosses_xdist_as_a_record(run, pytester: pytest.Pytester) -> None:
    """The controller receives each worker's result record with its types (numbers, booleans, lists), not the
    strings of the JUnit properties."""
    pytester.makeconftest("""
import json

WORKER = []

def pytest_configure(config):
    WORKER.append(hasattr(config, "workerinput"))

def pytest_runtest_logreport(report):
    record = getattr(report, "speedrun_record", None)
    if record is not None and not WORKER[0]:  # on the controller only
        with open("crossed.jsonl", "a") as f:
            f.write(json.dumps({k: type(record[k]).__name__ for k in ("fsr", "seed", "resumed", "reasons",
                                                                       "train_times_ms")}) + "\\n")
""")
    run("--speedrun-agent=oracle", "-n", "2", subprocess=True).assert_outcomes(passed=2)
    crossed = [json.loads(line) for line in (pytester.path / "crossed.jsonl").read_text().splitlines()]
    assert len(crossed) == 2
    assert all(c["fsr"] == "float" and c["seed"] == "int" and c["resumed"] == "bool" for c in crossed), crossed
    assert all(c["reasons"] in ("list", "tuple") and c["train_times_ms"] in ("list", "tuple") for c in crossed)


def test_the_one_reader_skips_a_torn_last_line_and_names_any_other_bad_line(tmp_path: Path) -> None:
    good = {"task": "t", "agent": "a", "hints": "0", "seed": 0, "status": "passed"}
    store = tmp_path / "s"
    results.append_record(store, good)
    with open(store / "results.jsonl", "a", encoding="utf-8") as f:
        f.write('{"task": "t", "age')  # a crash mid-write: no newline
    assert results.read_records(store) == [good]
    (store / "results.jsonl").write_text('{"task": "t", "age\n' + json.dumps(good) + "\n", encoding="utf-8")
    with pytest.raises(results.ResultsFormatError, match=r"results\.jsonl:1: invalid JSON.*remove or repair"):
        results.read_records(store)
    assert results.read_records(tmp_path / "none", missing_ok=True) == []


def test_summary_and_junit_carry_session_aggregates_under_xdist(run, pytester: pytest.Pytester) -> None:
    result = run("--speedrun-agent=oracle", "--speedrun-seeds=2", "-n", "2", "--junitxml=r.xml", subprocess=True)
    result.assert_outcomes(passed=4)
    # every row prints its interval: symmetric, or reaching up where the machine disturbed the run
    rows = [ln for ln in result.stdout.lines if ln.startswith("mini") and " passed " in ln]
    assert len(rows) == 4 and all(re.search(r"\d\.\d\d (± \d\.\d\d|\+\d\.\d\d/-\d\.\d\d)$", r) for r in rows), rows
    result.stdout.fnmatch_lines(["mean FSR: * [[]*, *[]] (95%) over 4 item(s)*",
                                 "references: 4 *; *run-to-run CV*",
                                 "oracle · h0: score * [[]*, *[]] (95%), std * over seeds, 2 task(s), "
                                 "IQM * [[]*, *[]] (95% CI), 4/4 passed"])
    root = ET.parse(pytester.path / "r.xml").getroot()
    suite_props = {p.get("name"): p.get("value") for p in root.find("testsuite").find("properties")}
    assert suite_props["speedrun_items"] == "4" and suite_props["speedrun_passed"] == "4"
    score = float(suite_props["speedrun[oracle,h0].score"])
    assert 0.6 <= score <= 1.4
    assert float(suite_props["speedrun[oracle,h0].score_ci_low"]) < score < \
        float(suite_props["speedrun[oracle,h0].score_ci_high"])
    for case in root.iter("testcase"):  # every scored item carries its interval
        props = {p.get("name"): p.get("value") for p in case.find("properties")}
        assert float(props["fsr_low"]) < float(props["fsr"]) < float(props["fsr_high"]), props


def test_cumulative_mode_chains_solutions(run, pytester: pytest.Pytester) -> None:
    result = run("--speedrun-agent=baseline", "--speedrun-cumulative")
    result.assert_outcomes(passed=2)
    first, second = _records(pytester)
    assert first["start_source"] == "record 1"
    assert second["start_source"].startswith("mini01 solution")
    # mini02 started from baseline's mini01 solution (record 1), not from record 2.
    started_from = Path(second["artifact_dir"], "start.py").read_text()
    assert started_from == Path(first["artifact_dir"], "solution.py").read_text()


def test_killing_pytest_mid_item_loses_nothing_already_written(pytester: pytest.Pytester, suite: Path,
                                                               cache_dir: Path) -> None:
    hang = suite / "records" / "record_3.py"
    hang.write_text("import time\nprint('started', flush=True)\ntime.sleep(120)\n")
    cmd = [sys.executable, "-m", "pytest", f"--speedrun-suite={suite}", "--speedrun-agent=oracle",
           f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider", f"--rootdir={pytester.path}",
           "--speedrun-calibrate"]
    # Calibrating mini02 runs record 3, which hangs: kill pytest with SIGKILL while it runs.
    hang.write_text(hang.read_text())
    proc = subprocess.Popen(cmd, cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = pytester.path / ".speedrun"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = list((cache_dir / "calibration").glob("*/run0.log"))
        if any("started" in p.read_text() for p in logs) and results.read_records(store):
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    (record,) = results.read_records(store)
    assert record["task"] == "mini01" and record["status"] == "passed"
    art = Path(record["artifact_dir"])
    assert json.loads((art / "result.json").read_text()) == record
    assert (art / "solution.py").exists() and (art / "run.log").exists()
