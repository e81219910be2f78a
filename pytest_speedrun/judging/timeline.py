"""The harness's own clock of a run: when each training-step line arrived, and what that says about the time the
run spent training.

The pump (pump.py) writes, for every output line, its arrival time, its byte offset in the log and the CPU
seconds the run's processes had used by then (older timelines, and pumps without /proc, have no third column).
From the
training-step lines this module derives `train_time_observed_ms`, an estimate of the training time that the
script cannot touch:

* the clock's (last) start is where the script's own cumulative train_time restarts (records 4–21 and the tiny
  records restart it after their warm-up steps); the steps before it are warm-up and are not counted;
* every gap that ends at a training-step line after that is one timed training step and is counted;
* a gap that ends at a validation line is validation, and is not counted; the gap from a validation line to the
  next training-step line is a training step again (the script restarts its clock after validating).

On the tiny records this agrees with the reported train_time to within a fraction of a percent (see
benchmarks/clock_agreement.py). Lines are only timestamped when they reach the harness, so a script that prints
without waiting for the GPU can make observed step boundaries lag: the observed time can only run behind the
work by that lag, never ahead of it.

Records 1–3 print the per-step time instead of a cumulative one and start their clock before the first step:
for them the first step's gap is not observable and is estimated by the median step gap (`approximate`).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from pytest_speedrun.judging.metrics import _RANK_PREFIX, SEPARATOR, TRAIN_LINE, TRAIN_LINE_OLD, VAL_LINE, train_time_ms
from pytest_speedrun.judging.sources import run_source


@dataclass(frozen=True)
class Timeline:
    """What the harness saw of a run's training, from the arrival times of its lines."""

    train_time_observed_ms: float | None  # wall time of the timed training steps, validation excluded
    timed_steps: int  # training-step lines after the clock's last start
    warmup_steps: int  # training-step lines before it (untimed by the script)
    unclocked_steps: int  # timed-region steps whose reported train_time advanced by under half their observed gap
    first_step_s: float | None  # when the first training-step line arrived, in seconds after the command started
    val_pause_ms: float  # wall time of the validations seen (train line -> validation line)
    last_line_s: float | None  # when the last line arrived
    approximate: bool = False  # the first timed step's gap had to be estimated (records 1–3 formats)
    # CPU seconds the run's process tree had used when the first training-step line arrived (None: not recorded).
    # Unlike first_step_s it does not grow with load, a cold page cache or waiting: it counts work done.
    first_step_cpu_s: float | None = None
    val_pauses: int = 0  # the validations that val_pause_ms covers (those right after a training-step line)

    def to_json(self) -> dict:
        return asdict(self)


def read_stamped(log_path: Path, timeline_path: Path) -> list[tuple[float, str, float | None]]:
    """(arrival seconds, line, CPU seconds used by then or None) for every timestamped line of a run; [] without
    a timeline."""
    try:
        data = Path(log_path).read_bytes()
        stamps = Path(timeline_path).read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for stamp in stamps:
        parts = stamp.split()
        if len(parts) not in (2, 3):
            continue
        try:
            t, off = float(parts[0]), int(parts[1])
            cpu = float(parts[2]) if len(parts) == 3 else None
        except ValueError:
            continue
        end = data.find(b"\n", off)
        out.append((t, data[off:end if end >= 0 else len(data)].decode("utf-8", errors="replace"), cpu))
    return out


def derive(lines: list[tuple[float, str]] | list[tuple[float, str, float | None]],
           source: str | None = None) -> Timeline | None:
    """The timeline of a run from its timestamped lines, (t, text) or (t, text, cpu); None when it printed no
    training-step line."""
    stamped = [(ln[0], ln[1], ln[2] if len(ln) > 2 else None) for ln in lines]
    if any(SEPARATOR in text for _, text, _ in stamped):  # records 15-21 echo their source above the separator
        last = max(i for i, (_, text, _) in enumerate(stamped) if SEPARATOR in text)
        stamped = stamped[last + 1:]
    echoed = {ln.strip() for ln in source.splitlines()} if source else set()
    events: list[tuple[float, str, int, float | None]] = []  # (t, "train" | "val", step, reported ms)
    first_cpu: float | None = None
    seen_train = False
    for t, raw, cpu in stamped:
        line = _RANK_PREFIX.sub("", raw.strip()).strip()
        if not line or line in echoed:
            continue
        if m := VAL_LINE.match(line):
            events.append((t, "val", int(m.group(1)), train_time_ms(m)))
        elif m := TRAIN_LINE.match(line):
            events.append((t, "train", int(m.group(1)), train_time_ms(m)))
        elif TRAIN_LINE_OLD.match(line):
            events.append((t, "train", int(line.split()[1].split("/")[0]), None))
        else:
            continue
        if events[-1][1] == "train" and not seen_train:
            seen_train, first_cpu = True, cpu
    trains = [i for i, e in enumerate(events) if e[1] == "train"]
    if not trains:
        return None
    # The clock's last start: after the last training-step line whose successor reports less cumulative time.
    start = -1
    for a, b in zip(trains, trains[1:]):
        ra, rb = events[a][3], events[b][3]
        if ra is not None and rb is not None and rb < ra:
            start = a
    gaps, unclocked, val_pause, pauses = [], 0, 0.0, 0
    for i in range(1, len(events)):
        t, kind, _, reported = events[i]
        gap = t - events[i - 1][0]
        if kind == "val":
            if events[i - 1][1] == "train":
                val_pause += gap
                pauses += 1
            continue
        if i <= start:
            continue
        gaps.append(gap)
        prev = events[i - 1]
        if (reported is not None and prev[1] == "train" and prev[3] is not None and i - 1 > start
                and gap > 0.005 and (reported - prev[3]) / 1000.0 < 0.5 * gap):
            unclocked += 1
    timed_count = sum(1 for i in trains if i > start)
    approximate = False
    if start < 0 and gaps and events[0][1] == "train":
        # No reset seen: the clock started before the first step line, whose own step is not observable.
        gaps.append(statistics.median(gaps))
        approximate = True
    observed = 1000.0 * sum(gaps) if gaps else None
    return Timeline(train_time_observed_ms=observed, timed_steps=timed_count,
                    warmup_steps=sum(1 for i in trains if i <= start), unclocked_steps=unclocked,
                    first_step_s=events[trains[0]][0], val_pause_ms=1000.0 * val_pause,
                    last_line_s=stamped[-1][0] if stamped else None, approximate=approximate,
                    first_step_cpu_s=first_cpu, val_pauses=pauses)


def of_run(log_path: Path, timeline_path: Path, script: Path | None = None) -> Timeline | None:
    """The timeline of one run from its files (None without a timeline or without training-step lines)."""
    source = None
    if script is not None:
        try:
            source = run_source(Path(script))  # with the files it runs (sources.py), as the log parser
        except OSError:
            source = None
    return derive(read_stamped(log_path, timeline_path), source)
