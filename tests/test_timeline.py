"""The harness's own clock: deriving the training time from line arrival times, for every log format."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pytest_speedrun.execution import runner
from pytest_speedrun.judging import timeline
from pytest_speedrun.judging.metrics import SEPARATOR


def _tiny_like(n: int = 20, warmup: int = 5, step_s: float = 0.1, val_every: int = 10, val_s: float = 0.5,
               start_s: float = 3.0) -> tuple[list[tuple[float, str]], float]:
    """Lines as a tiny record prints them, with exact arrival times: returns them and the true timed time."""
    t, reported, lines, timed = start_s, 0.0, [], 0.0
    for step in range(n + 1):
        if step == warmup:
            reported = 0.0
        if step == n or step % val_every == 0:
            t += val_s
            lines.append((t, f"step:{step}/{n} val_loss:3.9000 train_time:{reported * 1000:.0f}ms step_avg:1.00ms"))
        if step == n:
            break
        t += step_s
        reported += step_s
        if step >= warmup:
            timed += step_s
        lines.append((t, f"step:{step + 1}/{n} train_loss:4.0000 train_time:{reported * 1000:.0f}ms step_avg:1.00ms"))
    return lines, timed


def test_observed_time_counts_the_timed_steps_only() -> None:
    lines, timed = _tiny_like()
    tl = timeline.derive(lines)
    assert tl is not None
    assert tl.train_time_observed_ms == pytest.approx(timed * 1000)
    assert tl.val_pauses == 2 and tl.val_pause_ms == pytest.approx(2 * 500.0)  # steps 10 and 20; step 0 is no pause
    assert (tl.timed_steps, tl.warmup_steps, tl.unclocked_steps) == (15, 5, 0)
    assert tl.val_pause_ms == pytest.approx(1000.0)  # steps 10 and 20; step 0 has no training line before it
    assert tl.first_step_s == pytest.approx(3.6) and not tl.approximate


def test_steps_the_script_did_not_clock_are_counted() -> None:
    lines, _ = _tiny_like()
    # The script stops its clock for steps 12-14: their reported train_time does not advance.
    frozen = []
    for t, text in lines:
        if text.startswith(("step:12/", "step:13/", "step:14/")) and "train_loss" in text:
            text = text.replace(text.split("train_time:")[1].split("ms")[0], "700", 1)
        frozen.append((t, text))
    tl = timeline.derive(frozen)
    assert tl is not None and tl.unclocked_steps >= 2


def test_records_1_to_3_format_is_parsed_and_marked_approximate() -> None:
    lines = [(1.0 + 0.2 * k, f"step {k:4d}/5 | train loss 4.0000 | lr 1.00e-03 | (200.00 ms | 1000 tok/s)")
             for k in range(1, 6)]
    lines.insert(0, (0.5, "step:0/5 val_loss:5.0000 train_time:0ms"))
    tl = timeline.derive(lines[1:])  # without a step-0 validation line the first step is not observable
    assert tl is not None and tl.approximate and tl.train_time_observed_ms == pytest.approx(1000.0)
    with_val = timeline.derive(lines)
    assert with_val is not None and not with_val.approximate


def test_echoed_source_and_rank_prefixes_are_handled() -> None:
    lines, timed = _tiny_like()
    fake = "step:20/20 train_loss:4.0000 train_time:1ms step_avg:1.00ms"
    echoed = [(0.1, fake), (0.2, SEPARATOR)]
    prefixed = [(t, f"[rank0]: {text}") for t, text in lines]
    tl = timeline.derive(echoed + prefixed, source=f'print("""\n{fake}\n""")')
    assert tl is not None and tl.train_time_observed_ms == pytest.approx(timed * 1000)


def test_records_15_to_21_format_without_train_loss() -> None:
    lines, timed = _tiny_like()
    lines = [(t, text.replace("train_loss:4.0000 ", "")) for t, text in lines]
    tl = timeline.derive(lines)
    assert tl is not None and tl.train_time_observed_ms == pytest.approx(timed * 1000)


def test_no_training_lines_no_timeline() -> None:
    assert timeline.derive([(1.0, "hello")]) is None
    assert timeline.read_stamped(Path("/nonexistent.log"), Path("/nonexistent.timeline")) == []


SCRIPT = '''\
import time
n, warm = 30, 5
reported, t0 = 0.0, time.perf_counter()
for step in range(n + 1):
    if step == warm:
        reported, t0 = 0.0, time.perf_counter()
    if step == n:
        reported += time.perf_counter() - t0
        time.sleep(0.2)
        print(f"step:{step}/{n} val_loss:3.0000 train_time:{reported * 1000:.0f}ms step_avg:1.00ms", flush=True)
        break
    time.sleep(0.02)
    now = reported + time.perf_counter() - t0
    print(f"step:{step + 1}/{n} train_loss:4.0000 train_time:{now * 1000:.0f}ms step_avg:1.00ms", flush=True)
'''


def test_a_live_run_under_the_pump_agrees_with_its_own_clock(tmp_path: Path) -> None:
    script = tmp_path / "train_gpt2.py"
    script.write_text(SCRIPT)
    log = tmp_path / "run.log"
    out = runner.run(runner.RunSpec(script=script, workdir=tmp_path, log_path=log,
                                    env={"PATH": os.environ["PATH"]}, timeout_s=60, python=sys.executable))
    assert out.exit_code == 0
    tl = timeline.of_run(log, runner.timeline_path(log), script)
    assert tl is not None and tl.timed_steps == 25 and tl.warmup_steps == 5
    reported = float(log.read_text().strip().splitlines()[-1].split("train_time:")[1].split("ms")[0])
    # Both clocks time the same 25 steps; they differ only by when a line is read (well under a step)
    assert abs(tl.train_time_observed_ms - reported) < 100 + 0.1 * reported
    assert runner.read_cpu_stats(log)["wall_s"] > 0.5


BURN_THEN_STEP = '''\
import subprocess, sys, time
time.sleep(0.6)  # waiting is not work
while time.process_time() < 0.6:  # 0.6 s of CPU in this process
    pass
subprocess.run([sys.executable, "-c", "import time\\nwhile time.process_time() < 0.4: pass"], check=True)
print("step:1/2 train_loss:4.0000 train_time:10ms step_avg:10.00ms", flush=True)
print("step:2/2 val_loss:3.0000 train_time:20ms step_avg:10.00ms", flush=True)
'''


def test_the_pump_records_the_cpu_work_done_before_the_first_step_line(tmp_path: Path) -> None:
    """The third timeline column: CPU seconds of the run's processes, a helper process that exited included, and
    none of the time spent sleeping. The busy loops count CPU time, not wall time, so load cannot change them."""
    script = tmp_path / "train_gpt2.py"
    script.write_text(BURN_THEN_STEP)
    log = tmp_path / "run.log"
    out = runner.run(runner.RunSpec(script=script, workdir=tmp_path, log_path=log,
                                    env={"PATH": os.environ["PATH"]}, timeout_s=60, python=sys.executable))
    assert out.exit_code == 0, log.read_text()
    stamped = timeline.read_stamped(log, runner.timeline_path(log))
    assert [cpu is not None for _, _, cpu in stamped] == [True, True]
    tl = timeline.of_run(log, runner.timeline_path(log), script)
    assert tl is not None and tl.first_step_cpu_s is not None
    assert 0.95 <= tl.first_step_cpu_s < 1.5  # 0.6 + 0.4 s of loops (10 ms ticks), plus two interpreter start-ups
    assert tl.first_step_s >= tl.first_step_cpu_s + 0.5  # the sleep shows in the wall time only


def test_timelines_without_the_cpu_column_still_read() -> None:
    lines, _ = _tiny_like()
    tl = timeline.derive(lines)
    assert tl is not None and tl.first_step_cpu_s is None
    with_cpu = [(t, text, 2.0 + t) for t, text in lines]
    assert timeline.derive(with_cpu).first_step_cpu_s == pytest.approx(2.0 + lines[1][0])
