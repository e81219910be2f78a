"""References that don't go stale: the session's control check, accumulated runs, and the reference states.

The runs are scripted (a stand-in for execute_script returning chosen train times), so each path of the check is
taken deterministically; tests/test_tiny_suite.py runs the real thing."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from fakes import write_suite
from pytest_speedrun.data.dataset import ensure_tiny_dataset
from pytest_speedrun.execution.runner import RunOutcome
from pytest_speedrun.judging.integrity import Verdict
from pytest_speedrun.judging.metrics import Metrics
from pytest_speedrun.pipeline import calibrate
from pytest_speedrun.pipeline.calibrate import Calibrator
from pytest_speedrun.pipeline.item import Execution, RunSettings
from pytest_speedrun.tasks.manifest import load_suite

JITTER = itertools.cycle((-0.006, 0.004, 0.0, 0.007, -0.003, -0.005, 0.002))


class Machine:
    """Scripted runs: each record's base time, times a machine speed factor and a small fixed jitter."""

    def __init__(self, base: dict[str, float]) -> None:
        self.base, self.speed, self.runs, self.busy = base, 1.0, [], 0.0

    def __call__(self, script: Path, task, settings, seed: int, log_path: Path) -> Execution:
        source = script.read_text()
        name = next(k for k in self.base if f"WORK_S = {k}\n" in source)
        ms = self.base[name] * self.speed * math.exp(next(JITTER))
        self.runs.append(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("")
        outcome = RunOutcome(exit_code=0, wall_s=ms / 1000 + 1.0, log_path=log_path, timed_out=False)
        return Execution(outcome=outcome, metrics=Metrics(val_loss=1.9, train_time_ms=ms, step=10, steps=10),
                         verdict=Verdict("passed"), cpu={"others_busy": self.busy, "wall_s": ms / 1000 + 1})


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Machine:
    m = Machine({"0.6": 600.0, "0.3": 300.0, "0.15": 150.0})
    monkeypatch.setattr(calibrate, "execute_script", m)
    return m


def _calibrator(tmp_path: Path, cache: Path, session: str, started: float) -> tuple[Calibrator, list]:
    suite = write_suite(tmp_path / "suite")
    tasks = load_suite(suite)
    settings = RunSettings(dataset=ensure_tiny_dataset(cache), threads=1, session_id=session)
    return Calibrator(cache_dir=tmp_path / "cache", settings=settings, control=tasks[-1],
                      session_started=started), tasks


def test_cold_then_warm_then_moved(tmp_path: Path, cache_dir: Path, machine: Machine) -> None:
    cal, tasks = _calibrator(tmp_path, cache_dir, "s1", started=1.0)
    ref = cal.reference(tasks[0])
    # cold: the control record (the cheapest, 0.15) three times, then each record of the task once
    assert machine.runs == ["0.15"] * 3 + ["0.6", "0.3"]
    assert ref.state == "fresh" and ref.spread.df == 2 and not ref.spread.assumed
    second = cal.reference(tasks[1])  # both of its records are measured already (0.3 once, 0.15 thrice)
    assert second.state == "fresh" and len(machine.runs) == 5 and (second.n_start, second.n_target) == (1, 3)

    machine.runs.clear()
    warm, _ = _calibrator(tmp_path, cache_dir, "s2", started=1e12)
    ref2 = warm.reference(tasks[0])
    assert machine.runs == ["0.15"] * 3  # only the control: the cached references hold
    assert ref2.state == "re-checked" and ref2.spread.df == 5  # the control's runs accumulate
    assert ref2.t_start_ms == ref.t_start_ms

    machine.runs.clear()
    machine.speed = 1.05  # the machine got 5% slower
    moved, _ = _calibrator(tmp_path, cache_dir, "s3", started=1e12)
    ref3 = moved.reference(tasks[0])
    assert machine.runs == ["0.15"] * 3 + ["0.6", "0.3"]  # everything measured again
    assert ref3.state == "re-measured" and ref3.t_start_ms == pytest.approx(1.05 * ref.t_start_ms, rel=0.02)


def test_a_disturbed_calibration_run_is_run_again(tmp_path: Path, cache_dir: Path, machine: Machine) -> None:
    cal, tasks = _calibrator(tmp_path, cache_dir, "s1", started=1.0)
    machine.busy = 0.9  # another process keeps the other cores busy throughout
    ref = cal.reference(tasks[0])
    assert len(machine.runs) == 5 * (calibrate.RETRIES_DISTURBED + 1)
    assert ref.disturbed and "other cores were 90% busy" in ref.disturbed[0]


def test_a_recent_check_by_another_session_holds_within_the_window(tmp_path: Path, cache_dir: Path,
                                                                    machine: Machine) -> None:
    from dataclasses import replace

    cal, tasks = _calibrator(tmp_path, cache_dir, "s1", started=1.0)
    cal.reference(tasks[0])
    machine.runs.clear()
    soon, _ = _calibrator(tmp_path, cache_dir, "s2", started=1e12)
    ref = replace(soon, recheck_after_s=900).reference(tasks[0])
    assert machine.runs == [] and ref.state == "re-checked"  # checked seconds ago: no control runs
    late, _ = _calibrator(tmp_path, cache_dir, "s3", started=1e12)
    assert replace(late, recheck_after_s=0).reference(tasks[0]).state == "re-checked"
    assert machine.runs == ["0.15"] * 3  # a window of 0: every session runs the control


def test_a_move_seen_by_one_session_makes_older_entries_stale_for_the_next(tmp_path: Path, cache_dir: Path,
                                                                           machine: Machine) -> None:
    from dataclasses import replace

    cal, tasks = _calibrator(tmp_path, cache_dir, "s1", started=1.0)
    cal.reference(tasks[0])
    cal.reference(tasks[1])
    machine.speed, machine.runs[:] = 1.05, []
    moved, _ = _calibrator(tmp_path, cache_dir, "s2", started=1e12)
    assert moved.reference(tasks[1]).state == "re-measured"  # the control (0.15) and 0.3 measured again
    machine.runs.clear()
    later, _ = _calibrator(tmp_path, cache_dir, "s3", started=1e12)
    replace(later, recheck_after_s=900).reference(tasks[0])
    assert machine.runs == ["0.6"]  # within the window no control runs, but 0.6 predates the move: re-measured
