"""Ladder logs on generated stand-ins (never real ones): our parser reads every log format tracks 1 and 2 print,
and tasks/log_cut.py cuts a record's files out of its log byte for byte.

The formats met in the snapshot's track-1/2 logs (benchmarks/ladder_build.py parses all 1,100+ of them):
`step:N/N val_loss:X train_time:Nms step_avg:X.XXms` (`step_avg:nanms` at step 0), training lines with and without
train_loss, the script's own source above a line of 100 `=`, from 2026 on with its companion files after 40-dash
headers. Track 3 (optimization) prints train_time in seconds with 5-decimal losses
(`step:3125/3125 val_loss:3.27672 train_time:1527.766s step_avg:492.18ms`), sometimes more losses after val_loss,
and up to 30 runs in one file, each starting again at `step:0/N`.
"""

from __future__ import annotations

import pytest

from pytest_speedrun.errors import MetricsError
from pytest_speedrun.judging.metrics import parse_text
from pytest_speedrun.tasks.log_cut import MAIN, LogCutError, cut, cut_bytes, sections

DASHES = "-" * 40
SEP = "=" * 100
SCRIPT = 'import os\nprint("step:9/9 val_loss:1.0 train_time:1ms step_avg:1.00ms")  # a fake inside the source\n'
KERNELS = "import triton\n\ndef kernel():\n    return 2\n"
DC_KERNELS = "def other():\n    return 3\n"


def source(*companions: tuple[str, str]) -> str:
    code = SCRIPT
    for name, body in companions:
        code += f"\n\n{DASHES}\n# {name}\n{DASHES}\n\n" + body
    return code


def run_lines(steps: int, final_ms: int, loss: float, train_loss: bool = False, stop: int | None = None) -> str:
    out = [f"step:0/{steps} val_loss:10.8300 train_time:0ms step_avg:nanms"]
    last = stop if stop is not None else steps
    for s in range(1, last + 1):
        tl = "train_loss:4.0000 " if train_loss else ""
        out.append(f"step:{s}/{steps} {tl}train_time:{s * 10}ms step_avg:{10.0:.2f}ms")
        if s % 5 == 0 or s == steps:
            out.append(f"step:{s}/{steps} val_loss:{loss:.4f} train_time:{final_ms if s == steps else s * 10}ms "
                       f"step_avg:{(final_ms / s):.2f}ms")
    return "\n".join(out) + "\n"


def log(code: str, body: str) -> str:
    """A log as the records write it: print(code), the separator, the header, the run."""
    return f"{code}\n{SEP}\nRunning Python 3.12.7\nRunning PyTorch 2.10.0+cu128 compiled for CUDA 12.8\n{SEP}\n{body}"


@pytest.mark.parametrize("train_loss", [False, True])
@pytest.mark.parametrize("companions", [(), (("triton_kernels.py", KERNELS),),
                                        (("triton_kernels.py", KERNELS), ("dc_triton_kernels.py", DC_KERNELS))])
def test_every_ladder_log_format_parses_to_its_final_line(train_loss: bool, companions) -> None:
    text = log(source(*companions), run_lines(10, 75561, 3.2787, train_loss))
    m = parse_text(text)
    assert (m.step, m.steps, m.val_loss, m.train_time_ms) == (10, 10, 3.2787, 75561.0)


def test_a_truncated_run_is_refused() -> None:
    with pytest.raises(MetricsError, match="not the final step"):
        parse_text(log(source(), run_lines(20, 900, 3.29, stop=15)))


@pytest.mark.parametrize("companions", [(), (("triton_kernels.py", KERNELS),),
                                        (("triton_kernels.py", KERNELS), ("dc_triton_kernels.py", DC_KERNELS))])
def test_cut_returns_each_file_byte_for_byte(companions) -> None:
    text = log(source(*companions), run_lines(5, 50, 3.2))
    assert sections(text) == {MAIN: SCRIPT, **dict(companions)}


def test_a_file_without_trailing_newline_is_cut_exactly() -> None:
    code = "x = 1"
    assert cut(log(code, run_lines(5, 50, 3.2)), MAIN) == code


def test_cut_bytes_keeps_undecodable_bytes() -> None:
    data = log(SCRIPT, "").encode().replace(b"import os", b"import os  # \xff")
    assert cut_bytes(data, MAIN) == SCRIPT.encode().replace(b"import os", b"import os  # \xff")


def test_a_missing_section_or_a_log_without_source_is_a_clear_error() -> None:
    text = log(source(("triton_kernels.py", KERNELS)), "")
    with pytest.raises(LogCutError, match="no section 'dc_triton_kernels.py'.*script, triton_kernels.py"):
        cut(text, "dc_triton_kernels.py")
    with pytest.raises(LogCutError, match="line of 100 '='"):
        cut(run_lines(5, 50, 3.2), MAIN)


# --- track 3: seconds, several runs per file ----------------------------------------------------------------

def track3_run(steps: int, loss: float, final_s: float, stop: int | None = None) -> str:
    out = [f"step:0/{steps} val_loss:10.82584 train_time:0.000s step_avg:nanms"]
    for s in range(25, (stop or steps) + 1, 25):
        out.append(f"step:{s}/{steps} train_time:{s * 0.15:.3f}s step_avg:150.00ms")
        secs = final_s if s == steps else s * 0.15
        out.append(f"step:{s}/{steps} val_loss:{loss if s == steps else 4.0:.5f} train_time:{secs:.3f}s "
                   f"step_avg:{1000 * secs / s:.2f}ms")
    return "\n".join(out) + "\n"


def test_a_track3_line_in_seconds_parses_to_ms() -> None:
    m = parse_text("step:3125/3125 val_loss:3.27672 train_time:1527.766s step_avg:492.18ms")
    assert (m.step, m.steps, m.val_loss, m.train_time_ms) == (3125, 3125, 3.27672, 1527766.0)


def test_track3_training_lines_in_seconds_are_progress_in_ms() -> None:
    m = parse_text(log(SCRIPT, track3_run(100, 3.27, 15.5)))
    assert (m.last_train_step, m.last_train_time_ms, m.train_time_ms) == (100, 15000.0, 15500.0)


def test_a_multi_run_log_gives_the_last_runs_final_line() -> None:
    runs = track3_run(100, 3.279, 15.1) + track3_run(100, 3.2771, 15.2) + track3_run(100, 3.27654, 14.9)
    m = parse_text(log(SCRIPT, runs))
    assert (m.steps, m.val_loss, m.train_time_ms) == (100, 3.27654, 14900.0)


def test_a_multi_run_log_whose_last_run_stopped_is_refused() -> None:
    with pytest.raises(MetricsError, match="step 50/100, not the final step"):
        parse_text(log(SCRIPT, track3_run(100, 3.279, 15.1) + track3_run(100, 3.27, 15.0, stop=50)))


def test_more_losses_after_val_loss_are_not_the_result() -> None:
    m = parse_text("step:2900/2900 val_loss:3.27090 val_avg_loss:3.27090 val_ema_loss:3.27134 "
                   "train_time:10678.894s step_avg:3682.38ms")
    assert (m.val_loss, m.train_time_ms) == (3.2709, 10678894.0)


def test_a_unit_other_than_ms_or_s_is_no_result_line() -> None:
    with pytest.raises(MetricsError, match="no validation line"):
        parse_text("step:10/10 val_loss:3.2 train_time:1.5min step_avg:9.00ms")
