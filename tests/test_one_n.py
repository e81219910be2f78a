"""One N per run (integrity.one_n_reasons on metrics' step facts): every step line claims the final line's N, step
numbers never go back, nothing is stepped after the final validation line. Genuine logs of every format pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_speedrun.execution.runner import RunOutcome
from pytest_speedrun.judging import integrity
from pytest_speedrun.judging.metrics import SEPARATOR, parse_text


def records_1_3_log(n: int = 2000, every: int = 128) -> str:
    """What records 1-3 print: a validation line (with its `val loss` echo) every `every` steps and at N, a
    `step {k:4d}/{N} |` line after every step."""
    out = ["using device: cuda:0"]
    for step in range(n + 1):
        if step % every == 0 or step == n:
            loss = 10.9 - 7.6 * step / n
            out += [f"val loss {loss}", f"step:{step}/{n} val_loss:{loss:.4f} train_time:{step * 310}ms"]
        if step == n:
            break
        out.append(f"step {step + 1:4d}/{n} | train loss 3.210000 | norm 0.3000 | lr 1.00e-04 | (310.00 ms | "
                   "1700000 tok/s)")
    return "\n".join(out + ["final 20 iters avg: 310.000ms", "peak memory consumption: 31200 MiB"]) + "\n"


def records_4_21_log(n: int = 500, every: int = 125, train_loss: bool = True) -> str:
    """What records 4-21 (and the tiny records) print: validation lines at 0, every `every` steps and at N,
    `step:{k}/{N}` training lines (records 15-21 without train_loss)."""
    out = []
    for step in range(n + 1):
        if step % every == 0 or step == n:
            out.append(f"step:{step}/{n} val_loss:{10.8 - 7.5 * step / n:.4f} train_time:{step * 200}ms "
                       f"step_avg:{'nan' if step < 11 else '200.00'}ms")
        if step == n:
            break
        loss = "train_loss:3.3000 " if train_loss else ""
        out.append(f"step:{step + 1}/{n} {loss}train_time:{(step + 1) * 200}ms step_avg:200.00ms")
    return "\n".join(out) + "\n"


FAKE_VAL = "step:0/99 val_loss:10.0000 train_time:0ms step_avg:nanms"
ECHO = f'FAKE = """\n{FAKE_VAL}\nstep:9/9 val_loss:1.0 train_time:1ms\n"""\n'


@pytest.mark.parametrize("log", [
    records_1_3_log(),
    records_4_21_log(),
    records_4_21_log(train_loss=False),
    ECHO + SEPARATOR + "\nnvidia-smi\n" + SEPARATOR + "\n" + records_4_21_log(train_loss=False),  # records 15-21
    "".join(f"[rank0]: {ln}\n" for ln in records_4_21_log().splitlines()),  # torchrun --tee
    records_4_21_log(n=440, every=150),  # tiny01's start record
], ids=["records-1-3", "records-4-14", "records-15-21", "echoed-source", "rank-prefix", "tiny"])
def test_genuine_logs_of_every_format_keep_one_n(log: str) -> None:
    m = parse_text(log)
    assert integrity.one_n_reasons(m) == [] and len(m.step_totals) == 1


def test_echoed_source_lines_are_ignored_given_the_script() -> None:
    log = records_4_21_log(n=100, every=50)
    log = log.replace("step:50/100 train", f"{FAKE_VAL}\nstep:50/100 train")
    assert integrity.one_n_reasons(parse_text(log, source=ECHO)) == []


def test_stopping_at_the_first_dip_and_relabelling_the_step_as_the_last_is_named_by_lines() -> None:
    lines = records_4_21_log(n=440, every=10).splitlines()
    cut = lines.index("step:300/440 val_loss:5.6864 train_time:60000ms step_avg:200.00ms")
    log = "\n".join(lines[:cut] + ["step:300/300 val_loss:3.6900 train_time:60000ms step_avg:200.00ms"]) + "\n"
    m = parse_text(log)
    (reason,) = integrity.one_n_reasons(m)
    assert reason.startswith(f"the step lines do not agree on the number of steps: the final validation line (log "
                             f"line {cut + 1}) says step:300/300, but lines 1-{cut} ({cut} step lines) say /440")


@pytest.mark.parametrize("make", [records_1_3_log, records_4_21_log], ids=["records-1-3", "records-4-21"])
def test_an_n_changed_on_the_last_line_only_is_caught(make) -> None:
    lines = make(n=440, every=150).splitlines()
    last_train = max(i for i, ln in enumerate(lines) if ln.startswith(("step:396/440 train", "step  396/440 |")))
    log = "\n".join(lines[: last_train + 1] + ["step:396/396 val_loss:3.6900 train_time:79200ms"]) + "\n"
    (reason,) = integrity.one_n_reasons(parse_text(log))
    assert "says step:396/396" in reason and "say /440" in reason


def test_steps_going_backwards_are_caught_with_both_lines() -> None:
    first = records_4_21_log(n=100, every=50).splitlines()
    second = records_4_21_log(n=100, every=50).splitlines()
    log = "\n".join(first[:60] + second) + "\n"  # a restart (best of two runs, say): step 0 again at line 61
    reasons = integrity.one_n_reasons(parse_text(log))
    assert reasons == ["step numbers go backwards: log line 61 says step 0 after log line 60 said step 58"]


def test_training_after_the_final_validation_line_is_caught() -> None:
    log = records_4_21_log(n=100, every=50) + "step:101/100 train_loss:3.0 train_time:20300ms step_avg:201.00ms\n"
    (reason,) = integrity.one_n_reasons(parse_text(log))
    assert reason == ("1 step line(s) follow the final validation line (log line 103), from log line 104: the run "
                      "went on after reporting its result")


def test_log_line_numbers_count_the_echoed_source_above_the_separator() -> None:
    log = ECHO + SEPARATOR + "\n" + records_4_21_log(n=10, every=5)
    m = parse_text(log)
    assert m.step_totals[0].first_line == ECHO.count("\n") + 2 and m.final_line == log.count("\n")


def test_the_run_verdict_is_tampered_with_the_reason() -> None:
    lines = records_4_21_log(n=440, every=10).splitlines()
    log = "\n".join(lines[:5] + ["step:4/4 val_loss:3.6900 train_time:800ms step_avg:200.00ms"]) + "\n"
    outcome = RunOutcome(exit_code=0, wall_s=60.0, log_path=Path("run.log"), timed_out=False)
    v = integrity.judge(outcome, parse_text(log), None, 3.7, 600)
    assert v.status == "tampered" and "do not agree on the number of steps" in v.reasons[0]
