"""Parse NanoGPT-speedrun logs of every known format into `Metrics`.

Only one line carries a result: the validation line with `step == N`, which must also be the last validation
line. Rules that keep echoed source code and printed fakes out (see shared/reference/log-formats.md):

* if the log holds `=`×100 separator lines (records 15–21 echo their own source above one), only the text
  after the last separator is parsed;
* when the script source is known, any log line that appears verbatim in it is ignored: a real result line
  is formatted at run time, so it never appears in the source;
* training-step lines are progress only, never a result.

Besides the result, parsing records where each claimed total N occurs and whether step numbers ever go back
(`StepTotal`, `Metrics.step_back`): integrity.py turns these into the one-N rule.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from pytest_speedrun.errors import MetricsError
from pytest_speedrun.judging.sources import run_source

SEPARATOR = "=" * 100
_RANK_PREFIX = re.compile(r"^\[(?:rank|default)\d+\]:\s?")
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf"
# records 1-3: no step_avg; records 4-21: step_avg (nan at early steps). Track 3 (optimization) prints train_time
# in seconds (`train_time:1527.766s`): group 4 is the number, group 5 its unit (train_time_ms converts); some of
# its logs print more losses after val_loss (`val_ema_loss:3.27134`), which are not the result.
VAL_LINE = re.compile(
    rf"^step:(\d+)/(\d+) val_loss:({_NUM})(?: val_\w+:(?:{_NUM}))* train_time:({_NUM})(ms|s)(?: step_avg:({_NUM})ms)?$"
)
# records 4-14 (with train_loss) and 15-21 (without); track 3 in seconds, as VAL_LINE
TRAIN_LINE = re.compile(
    rf"^step:(\d+)/(\d+) (?:train_loss:({_NUM}) )?train_time:({_NUM})(ms|s) step_avg:({_NUM})ms$"
)
# records 1-3: "step    1/9536 | train loss 10.9 | ... | (123.45 ms | 1234 tok/s)"
TRAIN_LINE_OLD = re.compile(rf"^step\s+(\d+)/(\d+) \| train loss ({_NUM}) \|.*\(({_NUM}) ms \|")


def train_time_ms(m: re.Match[str]) -> float:
    """The train_time of a VAL_LINE or TRAIN_LINE match in ms, whichever unit the line printed."""
    value = float(m.group(4))
    return round(value * 1000, 3) if m.group(5) == "s" else value


@dataclass(frozen=True)
class StepTotal:
    """The step lines (training and validation) of a run that claim one total N: how many, and where."""

    steps: int
    count: int
    first_line: int  # 1-based line numbers in the log file
    last_line: int


@dataclass(frozen=True)
class Metrics:
    """The final result of a run, plus the progress figures used for cross-checks."""

    val_loss: float
    train_time_ms: float
    step: int
    steps: int
    last_train_step: int | None = None
    last_train_time_ms: float | None = None  # cumulative train_time of the last training-step line (records 4+)
    val_lines: int = 0
    step_totals: tuple[StepTotal, ...] = ()  # one per distinct N the step lines claim, in order of appearance
    step_back: tuple[int, int, int, int] | None = None  # first step number below its predecessor's:
    # (log line, step, previous log line, previous step)
    final_line: int | None = None  # log line of the final validation line
    lines_after_final: tuple[int, int] | None = None  # (count, first log line) of step lines after it

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Progress:
    """What a log says so far, for live progress and for failure messages when there is no result."""

    step: int | None
    steps: int | None
    last_val_loss: float | None
    last_train_time_ms: float | None


def _lines(text: str, source: str | None) -> list[tuple[int, str]]:
    """(1-based line number in the log, stripped line) of the lines that can carry steps or results."""
    first = 1
    if SEPARATOR in text:
        head, text = text.rsplit(SEPARATOR, 1)
        first = head.count("\n") + 1
    echoed = {ln.strip() for ln in source.splitlines()} if source else set()
    out = []
    for i, raw in enumerate(text.splitlines()):
        line = _RANK_PREFIX.sub("", raw.strip()).strip()
        if line and line not in echoed:
            out.append((first + i, line))
    return out


def scan(text: str, source: str | None = None) -> tuple[list[tuple[int, int, float, float]], Progress,
                                                         tuple[int | None, float | None],
                                                         list[tuple[int, int, int, bool]]]:
    """(validation lines as (step, N, val_loss, train_time), progress, last training step and its train_time,
    every step line as (log line, step, N, is_validation))."""
    vals: list[tuple[int, int, float, float]] = []
    marks: list[tuple[int, int, int, bool]] = []
    last_train: tuple[int | None, float | None] = (None, None)
    step = steps = None
    for lineno, line in _lines(text, source):
        if m := VAL_LINE.match(line):
            s, n = int(m.group(1)), int(m.group(2))
            vals.append((s, n, float(m.group(3)), train_time_ms(m)))
            step, steps = s, n
        elif m := TRAIN_LINE.match(line):
            s, n = int(m.group(1)), int(m.group(2))
            last_train = (s, train_time_ms(m))
            step, steps = s, n
        elif m := TRAIN_LINE_OLD.match(line):
            step, steps = int(m.group(1)), int(m.group(2))
            last_train = (step, None)
        else:
            continue
        marks.append((lineno, step, steps, m.re is VAL_LINE))
    progress = Progress(step=step, steps=steps, last_val_loss=vals[-1][2] if vals else None,
                        last_train_time_ms=vals[-1][3] if vals else None)
    return vals, progress, last_train, marks


def _step_facts(marks: list[tuple[int, int, int, bool]]) -> dict:
    """Where each claimed N occurs, the first backward step, and the step lines after the final validation."""
    totals: dict[int, list[int]] = {}
    back = None
    for i, (lineno, s, n, _) in enumerate(marks):
        t = totals.setdefault(n, [0, lineno, lineno])
        t[0], t[2] = t[0] + 1, lineno
        if back is None and i and s < marks[i - 1][1]:
            back = (lineno, s, marks[i - 1][0], marks[i - 1][1])
    final = max(i for i, mark in enumerate(marks) if mark[3])
    after = marks[final + 1:]
    return dict(step_totals=tuple(StepTotal(n, c, f, last) for n, (c, f, last) in totals.items()), step_back=back,
                final_line=marks[final][0], lines_after_final=(len(after), after[0][0]) if after else None)


def parse_text(text: str, source: str | None = None) -> Metrics:
    """Return the final result in `text`, or raise MetricsError with one clear line saying why there is none."""
    vals, progress, last_train, marks = scan(text, source)
    if not vals:
        where = f" (last step seen: {progress.step}/{progress.steps})" if progress.step is not None else ""
        raise MetricsError(f"no validation line in the log{where}; the run did not report a result")
    s, n, loss, ms = vals[-1]
    if s != n:
        raise MetricsError(f"the last validation line is at step {s}/{n}, not the final step {n}; "
                           "the run stopped before finishing")
    if not math.isfinite(loss) or not math.isfinite(ms):
        raise MetricsError(f"the final validation line has val_loss={loss} train_time={ms}ms, not finite numbers")
    return Metrics(val_loss=loss, train_time_ms=ms, step=s, steps=n, last_train_step=last_train[0],
                   last_train_time_ms=last_train[1], val_lines=len(vals), **_step_facts(marks))


def parse_log(path: Path, script: Path | None = None) -> Metrics:
    """Parse a log file; `script` (the source that produced it, with the files it runs from its folder:
    sources.py) enables the echoed-source rule."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        # the script and every file it runs from its folder: a result line echoed from a module is no result either
        source = run_source(Path(script)) if script else None
    except OSError as exc:
        raise MetricsError(f"{exc.filename}: cannot read ({exc.strerror})") from None
    try:
        return parse_text(text, source)
    except MetricsError as exc:
        raise MetricsError(f"{path}: {exc}") from None


def progress_of(text: str, source: str | None = None) -> Progress:
    return scan(text, source)[1]


def to_cli_json(m: Metrics) -> str:
    return json.dumps({"val_loss": m.val_loss, "train_time_ms": m.train_time_ms, "step": m.step, "steps": m.steps})


def progress_line(log_path: Path, elapsed_s: float) -> str:
    """One line for live progress, from the training-step lines so far: step k/N, last val_loss, elapsed, ETA."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        text = ""
    p = progress_of(text)
    if p.step is None or not p.steps:
        return f"starting, {elapsed_s:.0f}s elapsed"
    line = f"step {p.step}/{p.steps}"
    if p.last_val_loss is not None:
        line += f", val_loss {p.last_val_loss:.4f}"
    line += f", {elapsed_s:.0f}s elapsed"
    if p.step > 0:
        line += f", ETA {elapsed_s / p.step * (p.steps - p.step):.0f}s"
    return line
