"""The result record: one `ItemResult` per finished item, owned here, with its one writer and its decoder.

The record is what results.jsonl and result.json hold (`to_json`), what crosses pytest-xdist from a worker to
the controller (attached to the item's report, which xdist serialises: no string round trip), and what
`pytest-speedrun report` reads back. `store.read_records` is the one reader of the file.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from pytest_speedrun import __version__
from pytest_speedrun.files import write_atomic
from pytest_speedrun.judging.status import BENCHMARK, TIME, Metric, Mode, Status
from pytest_speedrun.results import store


def now() -> str:
    """A record's timestamp: local time with its UTC offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass(frozen=True)
class ItemResult:
    task: str
    suite: str
    agent: str
    hints: str
    seed: int
    status: Status
    reasons: tuple[str, ...]
    target_val_loss: float
    t_start_ms: float
    t_target_ms: float
    reference_source: str
    artifact_dir: str
    config_key: str = ""
    model: str = ""
    scaffold: str = ""
    start_source: str = ""
    log_path: str | None = None
    val_loss: float | None = None
    train_time_ms: float | None = None
    train_time_std_ms: float | None = None
    step: int | None = None
    steps: int | None = None
    wall_s: float | None = None
    speedup: float | None = None
    fsr: float | None = None
    fsr_low: float | None = None  # the 95% interval of the FSR (noise.fsr_interval)
    fsr_high: float | None = None
    noise: str = ""  # the run-to-run spread the interval rests on, e.g. "0.85% run-to-run CV (measured, 6 ...)"
    reference_state: str = ""  # fresh | re-checked | re-measured | cached | manifest (calibrate.py)
    train_time_observed_ms: float | None = None  # the harness's own clock (timeline.py), mean over the runs
    train_times_observed_ms: tuple[float, ...] = ()  # per run, with repeats
    disturbed: str = ""  # why the machine may have slowed the scored runs ("" if it did not)
    queued_s: float = 0.0  # how long the runs waited for their cores/GPUs (other runs held them)
    # the witness (docs/timing.md): the start record timed next to the scored run; t_start_ms and t_target_ms are
    # then the references rescaled by witness_ratio (witness_ms / the start reference), unless it was reused
    witness_ms: float | None = None
    witness_ratio: float | None = None
    witness_reused: bool = False  # the start record's calibration or control run ran this close: no run of its own
    witness_gap_s: float | None = None  # seconds between the witness and the scored run(s)
    witness_log: str = ""  # the witness run's log (a reused one: its calibration entry's run directory)
    note: str = ""  # one summary line when the interval is wider than ±0.2 (noise.advice)
    repeats: int = 1
    val_losses: tuple[float, ...] = ()
    train_times_ms: tuple[float, ...] = ()
    p_value: float | None = None
    usage: dict = field(default_factory=dict)
    nodes: tuple[dict, ...] = ()  # search nodes (scaffolds), in the order they ran
    mode: Mode = BENCHMARK  # or SMOKE: a few steps of the start script, no val_loss asserted
    metric: Metric = TIME  # what fsr and speedup count (the task's manifest): train time, or steps
    s_start: int | None = None  # steps tasks: s_i and s_(i+1), the records' steps the FSR is taken against
    s_target: int | None = None
    runtime: str = ""  # the runtime the task names (tasks/runtimes.py; "" : none) and where its interpreter came
    runtime_kind: str = ""  # from (execution/runtime.py: python-option, mapped, built, current)
    python: str = ""  # the interpreter every run of the item used
    torch: str = ""  # torch's version there
    compat: tuple[str, ...] = ()  # compat fixes applied to the item's pinned scripts (tasks/compat.py)
    slurm_job_id: str | None = None  # the scored run's Slurm job (--speedrun-launcher=slurm)
    slurm_node: str | None = None
    slurm_reattached: bool = False  # --speedrun-resume found the scored run's job still in Slurm and waited on it
    resumed_from: str = ""  # the interrupted attempt this one continued (its runs and LLM answers were reused)
    resumed: bool = False
    harness_version: str = __version__
    started: str = ""
    finished: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict, **changes: object) -> ItemResult:
        """An ItemResult from a record as written by `to_json` (lists back to tuples; keys a newer harness
        added are ignored), with `changes` applied."""
        known = {f.name for f in fields(cls)}
        data = {k: (tuple(v) if isinstance(v, list) else v) for k, v in record.items() if k in known}
        return replace(cls(**data), **changes)


def write(art: Path, result: ItemResult) -> ItemResult:
    """The one writer: the item's result.json and its line in the store's results.jsonl (the store is two levels
    up from the item's artifacts: <root>/<session>/<item>)."""
    data = result.to_json()
    write_atomic(art / "result.json", json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    store.append_record(art.parent.parent, data)
    return result
