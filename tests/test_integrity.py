from pathlib import Path

from fakes import write_suite
from pytest_speedrun.execution.runner import RunOutcome
from pytest_speedrun.judging import integrity
from pytest_speedrun.judging.integrity import Verdict, final_verdict, suspicious_reasons
from pytest_speedrun.judging.leaks import leak_reasons
from pytest_speedrun.judging.metrics import Metrics
from pytest_speedrun.pipeline.item import prepare_workspace
from pytest_speedrun.tasks.manifest import load_task


def _m(loss: float = 1.95, ms: float = 800.0, steps: int = 100, last: float | None = 790.0) -> Metrics:
    return Metrics(val_loss=loss, train_time_ms=ms, step=steps, steps=steps, last_train_step=steps,
                   last_train_time_ms=last)


def _outcome(code: int | None = 0, wall: float = 2.0, timed_out: bool = False) -> RunOutcome:
    return RunOutcome(exit_code=code, wall_s=wall, log_path=Path("run.log"), timed_out=timed_out)


def test_statuses_of_a_run() -> None:
    judge = integrity.judge
    assert judge(_outcome(), _m(), None, 2.0, 60).status == "passed"
    assert judge(_outcome(), _m(loss=2.1), None, 2.0, 60).reasons == ("val_loss 2.1000 > target 2.0000",)
    assert judge(_outcome(code=1), _m(), None, 2.0, 60).status == "crashed"
    assert judge(_outcome(code=None, timed_out=True), None, "x", 2.0, 60).status == "timeout"
    assert judge(_outcome(), None, "no line", 2.0, 60).reasons == ("no line",)


def test_train_time_beyond_the_measured_wall_time_is_tampered() -> None:
    v = integrity.judge(_outcome(wall=0.5), _m(ms=800), None, 2.0, 60)
    assert v.status == "tampered" and "exceeds the harness-measured wall time 500 ms" in v.reasons[0]


def test_final_train_time_below_the_last_training_step_is_tampered() -> None:
    v = integrity.judge(_outcome(), _m(ms=500, last=790), None, 2.0, 60)
    assert v.status == "tampered" and "below the last training-step" in v.reasons[0]


def test_suspicious_rules() -> None:
    assert suspicious_reasons(_m(ms=300), 2.0, 2.0, 1000, 800) == [
        "train_time 300 ms is below 0.4 x the next record's 800 ms"]
    assert "more than 0.1 below the target" in suspicious_reasons(_m(loss=1.8), 2.0, 2.0, 1000, 700)[0]
    assert "step count changed 100 -> 400" in suspicious_reasons(_m(steps=400), 2.0, 2.0, 1000, 700, 100)[0]
    assert suspicious_reasons(_m(steps=250), 2.0, 2.0, 1000, 700, 100) == []
    # untimed work: 2.0 s wall - 0.8 s train = 1.2 s vs start 0.3 s -> limit 1.5*0.3 + 0.25*1.0 = 0.7 s
    (reason,) = suspicious_reasons(_m(), 2.0, 2.0, 1000, 700, start_untimed_s=0.3)
    assert reason.startswith("1.2 s of the run's wall time is outside its reported train_time")
    assert suspicious_reasons(_m(), 1.2, 2.0, 1000, 700, start_untimed_s=0.3) == []


def test_final_verdict_precedence() -> None:
    ok = Verdict("passed")
    assert final_verdict(ok, ["t"], ["s"], False) == Verdict("tampered", ("t",))
    assert final_verdict(ok, [], ["s"], False) == Verdict("suspicious", ("s",))
    assert final_verdict(ok, [], ["s"], True) == Verdict("passed", ("suspicious (allowed): s",))
    assert final_verdict(Verdict("crashed", ("exit code 1",)), [], ["s"], False).status == "crashed"


def test_workspace_leaks(tmp_path: Path) -> None:
    task = load_task(write_suite(tmp_path / "s") / "mini01.toml")
    art = tmp_path / "art"
    art.mkdir()
    workspace, script, _ = prepare_workspace(task, (1,), art)
    assert leak_reasons(workspace, task, (1,)) == []
    (workspace / "notes.txt").write_text(f"see {task.target.script.path}\n")
    (workspace / "h.md").symlink_to(task.hints[3])
    (workspace / "copy.py").write_bytes(task.target.script.path.read_bytes())
    reasons = leak_reasons(workspace, task, (1,))
    assert any(r.startswith("workspace file notes.txt refers to") for r in reasons)
    assert any(r.startswith("workspace file h.md is a link to") for r in reasons)
    assert "workspace file copy.py is a copy of the target record's script" in reasons


def test_a_final_line_beyond_the_last_training_step_is_tampered() -> None:
    m = Metrics(val_loss=1.9, train_time_ms=800, step=100, steps=100, last_train_step=50, last_train_time_ms=400)
    v = integrity.judge(_outcome(), m, None, 2.0, 60)
    assert v == Verdict("tampered", ("the final validation line claims step 100/100 but the last training step "
                                     "logged is 50",))
