"""Plugin behaviour, through real pytest runs (pytester)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fakes import write_suite

pytest_plugins = ["pytester"]


def test_items_are_skipped_with_the_fix_when_no_agent_is_given(run) -> None:
    result = run("-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*no agent: run the benchmark with --speedrun-agent=oracle*"])


def test_dash_k_selects_one_task_by_id(run) -> None:
    result = run("-k", "mini02", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["speedrun/mini/mini02.toml::mini02[[]h0-s0[]]", "1/2 tests collected*"])


def test_items_are_parametrized_over_regimes_and_seeds_in_a_stable_order(run) -> None:
    result = run("--speedrun-hints=0,1+2", "--speedrun-seeds=2", "--collect-only", "-q")
    ids = [ln.split("::")[1] for ln in result.stdout.lines if "::" in ln]
    assert ids == ["mini01[h0-s0]", "mini01[h0-s1]", "mini01[h1+2-s0]", "mini01[h1+2-s1]",
                   "mini02[h0-s0]", "mini02[h0-s1]", "mini02[h1+2-s0]", "mini02[h1+2-s1]"]


def test_malformed_manifest_is_a_one_line_collection_error(run, suite: Path) -> None:
    path = suite / "mini01.toml"
    path.write_text(path.read_text().replace("timeout_s = 60", 'timeout_s = "1h"'))
    result = run()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([f"{path}: key 'launch.timeout_s': expected a number, got str '1h'"])
    assert "Traceback" not in result.stdout.str()


def test_unknown_agent_is_a_usage_error_listing_agents(run) -> None:
    result = run("--speedrun-agent=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown agent 'nope'; available: baseline, command:<shell command>, oracle*"])


def test_bad_hint_regime_is_a_usage_error(run) -> None:
    result = run("--speedrun-hints=5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--speedrun-hints=5*"])


def _fsr(row: str) -> float:
    """The FSR of a summary row: the number before its interval (`1.01 ± 0.04` or `1.01 +0.30/-0.04`)."""
    cells = row.split()
    at = next(i for i, c in enumerate(cells) if c == "±" or c.startswith("+"))
    return float(cells[at - 1])


def test_oracle_passes_every_task_with_fsr_near_one_and_prints_the_summary(run) -> None:
    result = run("--speedrun-agent=oracle")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*= speedrun =*", "item*status*val_loss*FSR", "mini01[[]h0-s0[]]*passed*",
                                 "mini02[[]h0-s0[]]*passed*", "mean FSR: * over 2 item(s), 2 passed*"])
    fsrs = [_fsr(ln) for ln in result.stdout.lines if ln.startswith("mini") and " passed " in ln]
    assert all(0.6 <= f <= 1.4 for f in fsrs), fsrs


def test_baseline_scores_fsr_near_zero(run) -> None:
    result = run("--speedrun-agent=baseline")
    result.assert_outcomes(passed=2)
    fsrs = [_fsr(ln) for ln in result.stdout.lines if ln.startswith("mini") and " passed " in ln]
    assert all(abs(f) <= 0.3 for f in fsrs), fsrs


def test_min_fsr_fails_items_below_it(run) -> None:
    result = run("--speedrun-agent=baseline", "--speedrun-min-fsr=0.5")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*status passed but FSR * < --speedrun-min-fsr 0.5*"])


def test_a_command_agent_that_breaks_the_script_crashes_only_its_item(run) -> None:
    cmd = 'command:case "$SPEEDRUN_TASK_ID" in mini01) sed -i "1i raise SystemExit(5)" "$SPEEDRUN_SCRIPT";; esac'
    result = run(f"--speedrun-agent={cmd}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*mini01 [[]command:*, hints 0, seed 0[]]: status crashed: exit code 5",
        "*val_loss: n/a (target <= 2.0000)",
        "*log: */run.log",
        "*--- last lines of the log ---",
    ])
    assert "Traceback" not in result.stdout.str()


def test_agent_failure_is_status_agent_error(run) -> None:
    result = run("--speedrun-agent=command:echo no idea; exit 3")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*status agent-error: agent command exited with code 3: no idea*"])


def test_junit_xml_carries_the_properties_under_xdist(run, pytester: pytest.Pytester) -> None:
    result = run("--speedrun-agent=oracle", "-k", "mini02", "-n", "2", "--junitxml=r.xml", subprocess=True)
    result.assert_outcomes(passed=1)
    assert result.stdout.str().count("= speedrun =") == 1
    cases = ET.parse(pytester.path / "r.xml").getroot().iter("testcase")
    (case,) = list(cases)
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    for key in ("agent", "hints", "seed", "status", "val_loss", "train_time_ms", "t_start_ms", "t_target_ms",
                "speedup", "fsr", "artifact_dir"):
        assert key in props, key
    assert props["status"] == "passed" and props["agent"] == "oracle" and props["hints"] == "0"
    assert Path(props["artifact_dir"], "run.log").exists()


def test_results_are_recorded_per_item(run, pytester: pytest.Pytester) -> None:
    import json

    run("--speedrun-agent=oracle", "-k", "mini01", "--speedrun-hints=1")
    lines = (pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()
    (record,) = [json.loads(ln) for ln in lines]
    assert record["task"] == "mini01" and record["status"] == "passed" and record["hints"] == "1"
    art = Path(record["artifact_dir"])
    for name in ("start.py", "solution.py", "solution.diff", "run.log", "result.json", "workspace/hints.md"):
        assert (art / name).exists(), name


def test_conftest_hook_can_provide_an_agent(run, pytester: pytest.Pytester) -> None:
    pytester.makeconftest('''
        from pytest_speedrun.agents import Solution

        class Slower:
            name = "slower"
            def solve(self, ctx):
                return Solution(script=ctx.start_script.replace("WORK_S = ", "WORK_S = 0.05 + "))

        def pytest_speedrun_make_agent(name, arg, config):
            return Slower() if name == "slower" else None
    ''')
    result = run("--speedrun-agent=slower", "-k", "mini02")
    result.assert_outcomes(passed=1)
    fsr = _fsr([ln for ln in result.stdout.lines if ln.startswith("mini02")][0])
    assert fsr < 0


def test_the_plugin_process_never_imports_torch(run, pytester: pytest.Pytester) -> None:
    pytester.makeconftest('''
        import sys
        def pytest_sessionfinish(session):
            print("TORCH-IMPORTED" if "torch" in sys.modules else "TORCH-ABSENT")
    ''')
    result = run("--speedrun-agent=oracle", "-s", subprocess=True)
    result.stdout.fnmatch_lines(["*TORCH-ABSENT*"])


def test_a_suite_directory_under_tasks_is_collected_from_its_path(pytester: pytest.Pytester) -> None:
    suite = write_suite(pytester.path / "tasks")
    result = pytester.runpytest("tasks/mini", "--collect-only", "-q", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["tasks/mini/mini01.toml::mini01[[]h0-s0[]]", "tasks/mini/mini02.toml::*",
                                 "2 tests collected*"])
    # Naming the same suite with --speedrun-suite as well does not collect it twice.
    both = pytester.runpytest("tasks/mini", f"--speedrun-suite={suite}", "--collect-only", "-q",
                              "-p", "no:cacheprovider")
    both.stdout.fnmatch_lines(["2 tests collected*"])


def test_other_toml_files_are_not_collected(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", pyproject="[tool.other]\nx = 1\n")
    (pytester.path / "conf").mkdir()
    (pytester.path / "conf" / "settings.toml").write_text("a = 1\n")
    result = pytester.runpytest(".", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.mark.parametrize(("args", "env", "expected"), [
    ((), None, "outer"), (("--timeout=7",), None, 7.0), ((), "9", 9.0), (("--timeout=100000",), None, "outer"),
])
def test_a_shorter_user_timeout_caps_the_items_safety_net(run, pytester: pytest.Pytester, monkeypatch, args, env,
                                                          expected) -> None:
    """pytest-timeout's marker would override --timeout; the item's marker takes the shorter of the two."""
    if env is not None:
        monkeypatch.setenv("PYTEST_TIMEOUT", env)
    pytester.makeconftest("""
        def pytest_collection_finish(session):
            for item in session.items:
                print("TIMEOUT", item.get_closest_marker("timeout").args[0])
    """)
    result = run("--collect-only", "-q", "-s", "-k", "mini01", *args)
    (value,) = [float(ln.split()[1]) for ln in result.stdout.lines if ln.startswith("TIMEOUT")]
    # agent timeout + the run, its two records' calibration runs (3 each if re-measured), the session's 3
    # control runs, the witness and a search's chosen node run again next to it + margin
    outer = 3600 + 60 * (1 + 2 * 3 + 3 + 2) + 300
    assert value == (outer if expected == "outer" else expected)


def test_the_quickstart_main_job_collects_only_the_suite_in_this_repository() -> None:
    """`pytest --speedrun-suite=tiny` from the repository root (the README's first line) must not also run the
    unit tests that the ini's testpaths name; plain `pytest` still does."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent

    def collected(*args: str) -> list[str]:
        out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                             cwd=root, capture_output=True, text=True, timeout=300).stdout
        return [ln for ln in out.splitlines() if "::" in ln]

    assert collected("--speedrun-suite=tiny") == [f"speedrun/tiny/tiny0{k}.toml::tiny0{k}[h0-s0]" for k in (1, 2, 3, 4)]
    assert any(ln.startswith("tests/") for ln in collected())
