import json
from pathlib import Path

import pytest

from pytest_speedrun import cli
from pytest_speedrun.errors import MetricsError
from pytest_speedrun.judging.metrics import SEPARATOR, parse_log, parse_text

# Logs in each format of shared/reference/log-formats.md, with realistic figures.
LOG_RECORDS_1_3 = """\
using device: cuda:0
step    1/9536 | train loss 10.998123 | norm 12.3456 | lr 1.00e-05 | (1234.56 ms | 424 tok/s)
val loss 7.123456789
step:128/9536 val_loss:7.1235 train_time:12345ms
step 9536/9536 | train loss 3.210000 | lr 0.00e+00 | (231.00 ms | 2270000 tok/s)
val loss 3.2766123
step:9536/9536 val_loss:3.2766 train_time:2968348ms
"""
LOG_RECORD_3 = """\
step    1/7000 | train loss 10.9876 | lr_scale 1.00e+00 | (123.45 ms | 4000 tok/s)
step:7000/7000 val_loss:3.2813 train_time:1386147ms
"""
LOG_RECORDS_4_14 = """\
step:0/6200 val_loss:10.8258 train_time:0ms step_avg:nanms
step:1/6200 train_loss:10.8258 train_time:25021ms step_avg:nanms
step:11/6200 train_loss:9.1 train_time:2100ms step_avg:210.00ms
step:125/6200 val_loss:4.3012 train_time:26000ms step_avg:226.09ms
step:6200/6200 train_loss:3.2700 train_time:1301000ms step_avg:210.00ms
step:6200/6200 val_loss:3.2772 train_time:1301740ms step_avg:210.12ms
peak memory consumption: 31200 MiB
"""
FAKE_SOURCE = '''\
import os
print("starting")
FAKE = """
step:0/1390 val_loss:10.8258 train_time:0ms step_avg:nanms
step:1390/1390 val_loss:2.9000 train_time:1000ms step_avg:0.72ms
"""
'''
LOG_RECORDS_15_21 = (
    FAKE_SOURCE + SEPARATOR + "\n| NVIDIA-SMI 550.54 |\n" + SEPARATOR + "\n"
    "step:0/1390 val_loss:10.8258 train_time:0ms step_avg:nanms\n"
    "step:1/1390 train_time:30000ms step_avg:nanms\n"
    "step:1390/1390 train_time:179000ms step_avg:130.00ms\n"
    "step:1390/1390 val_loss:3.2794 train_time:179321ms step_avg:130.12ms\n"
    "peak memory allocated: 22000 MiB reserved: 24000 MiB\n"
)


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        (LOG_RECORDS_1_3, (3.2766, 2968348, 9536, 9536)),
        (LOG_RECORD_3, (3.2813, 1386147, 7000, 7000)),
        (LOG_RECORDS_4_14, (3.2772, 1301740, 6200, 6200)),
        (LOG_RECORDS_15_21, (3.2794, 179321, 1390, 1390)),
    ],
    ids=["records-1-3", "record-3", "records-4-14", "records-15-21"],
)
def test_final_result_is_read_from_every_log_format(log: str, expected: tuple) -> None:
    m = parse_text(log)
    assert (m.val_loss, m.train_time_ms, m.step, m.steps) == expected


def test_training_step_lines_feed_the_cross_check_fields() -> None:
    m = parse_text(LOG_RECORDS_4_14)
    assert (m.last_train_step, m.last_train_time_ms, m.val_lines) == (6200, 1301000, 3)


def test_torchrun_rank_prefix_is_stripped() -> None:
    log = "".join(f"[rank0]: {ln}\n" for ln in LOG_RECORDS_4_14.splitlines())
    assert parse_text(log).val_loss == 3.2772


def test_fake_result_in_echoed_source_without_separator_is_ignored_given_the_script() -> None:
    # A script that echoes its own source but never prints a real final line: without the script the
    # fake is believed; with the script (the harness always has it) it is ignored.
    log = "step:0/1390 val_loss:10.8258 train_time:0ms step_avg:nanms\n" + FAKE_SOURCE
    assert parse_text(log).val_loss == 2.9
    with pytest.raises(MetricsError, match="not the final step|no validation line"):
        parse_text(log, source=FAKE_SOURCE)


def test_echoed_fake_before_the_separator_never_wins() -> None:
    truncated = LOG_RECORDS_15_21.split("step:1390/1390 val_loss:3.2794")[0]
    with pytest.raises(MetricsError, match="not the final step"):
        parse_text(truncated)


def test_a_later_non_final_validation_line_invalidates_the_result() -> None:
    log = LOG_RECORDS_4_14 + "step:125/6200 val_loss:3.0000 train_time:1400000ms step_avg:1.00ms\n"
    with pytest.raises(MetricsError, match="last validation line is at step 125/6200"):
        parse_text(log)


def test_log_without_validation_lines_reports_progress() -> None:
    with pytest.raises(MetricsError, match=r"no validation line in the log \(last step seen: 11/6200\)"):
        parse_text("step:11/6200 train_loss:9.1 train_time:2100ms step_avg:210.00ms\nTraceback ...\n")


def test_nan_final_loss_is_no_result() -> None:
    with pytest.raises(MetricsError, match="not finite"):
        parse_text("step:10/10 val_loss:nan train_time:100ms step_avg:10.00ms\n")


def test_parse_log_cli_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "run.log"
    log.write_text(LOG_RECORDS_15_21)
    assert cli.main(["parse-log", str(log)]) == 0
    assert json.loads(capsys.readouterr().out) == {"val_loss": 3.2794, "train_time_ms": 179321.0, "step": 1390,
                                                   "steps": 1390}


def test_parse_log_cli_exits_nonzero_with_one_line_when_there_is_no_result(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "run.log"
    log.write_text("Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n")
    assert cli.main(["parse-log", str(log)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(log) in err and "no validation line" in err


def test_parse_log_cli_uses_the_script_to_ignore_echoed_lines(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    script, log = tmp_path / "train_gpt2.py", tmp_path / "run.log"
    script.write_text(FAKE_SOURCE)
    log.write_text("step:0/1390 val_loss:10.8258 train_time:0ms step_avg:nanms\n" + FAKE_SOURCE)
    assert cli.main(["parse-log", str(log)]) == 0
    assert cli.main(["parse-log", str(log), "--script", str(script)]) == 1
    assert cli.main(["parse-log", str(log), "--script", str(tmp_path / "missing.py")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_parse_log_is_also_importable(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    log.write_text(LOG_RECORD_3)
    assert parse_log(log).steps == 7000
