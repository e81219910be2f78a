"""Live progress: step k/N, last val_loss, elapsed and ETA, parsed from the training-step lines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fakes import write_suite
from pytest_speedrun.execution import runner
from pytest_speedrun.judging.metrics import progress_line

pytest_plugins = ["pytester"]


def test_progress_line_reads_the_latest_step_and_val_loss(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("step:0/100 val_loss:5.0000 train_time:0ms step_avg:nanms\n"
                   "step:25/100 train_loss:4.0 train_time:2500ms step_avg:100.00ms\n")
    assert progress_line(log, 10.0) == "step 25/100, val_loss 5.0000, 10s elapsed, ETA 30s"
    assert progress_line(tmp_path / "none.log", 1.0) == "starting, 1s elapsed"


def test_the_runner_reports_progress_while_the_run_lasts(tmp_path: Path) -> None:
    calls: list[float] = []
    script = tmp_path / "t.py"
    script.write_text("import time\ntime.sleep(1.6)\n")
    spec = runner.RunSpec(script=script, workdir=tmp_path, log_path=tmp_path / "l", env={"PATH": os.environ["PATH"]},
                          timeout_s=30, on_progress=calls.append, progress_every_s=0.3)
    assert runner.run(spec).exit_code == 0
    assert len(calls) >= 3 and calls == sorted(calls)


def test_verbose_runs_show_an_updating_progress_line(pytester: pytest.Pytester, cache_dir: Path) -> None:
    suite = write_suite(pytester.path / "suites", works=(2.0, 1.0))
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=oracle", "-v",
                                           f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "[speedrun] mini01[h0-s0]: step " in result.stdout.str()


def test_under_xdist_progress_goes_to_per_worker_logs_named_in_the_summary(pytester: pytest.Pytester,
                                                                           cache_dir: Path) -> None:
    suite = write_suite(pytester.path / "suites", works=(2.0, 1.0))
    result = pytester.runpytest_subprocess(f"--speedrun-suite={suite}", "--speedrun-agent=oracle", "-n", "2",
                                           f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["live progress per worker: */progress-gw*.log"])
    logs = list((pytester.path / ".speedrun").glob("*/progress-gw*.log"))
    assert logs and "mini01[h0-s0]: step " in logs[0].read_text()
