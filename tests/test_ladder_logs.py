"""Ladder logs on generated stand-ins (never real ones): our parser reads every log format tracks 1 and 2 print,
and tasks/log_cut.py cuts a record's files out of its log byte for byte.

The formats met in the snapshot's track-1/2 logs (benchmarks/ladder_build.py parses all 1,100+ of them):
`step:N/N val_loss:X train_time:Nms step_avg:X.XXms` (`step_avg:nanms` at step 0), training lines with and without
train_loss, the script's own source above a line of 100 `=`, from 2026 on with its companion files after 40-dash
headers. None of them prints train_time in seconds (only llm.c's logs do, which no ladder task uses).
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
