"""The host's timing slot end to end: timed runs take turns while agents work side by side.

This machine has one run core, so every run queues for it and the slot would change nothing here. The test seam
`SPEEDRUN_FAKE_RUN_CORES=3` gives the session three run cores with pinning off, in a lease pool of its own
(`SPEEDRUN_LEASE_DIR`). Three items (one task, three seeds) run under `-n 3` with a `command:` agent that waits
until all three agents are working (a barrier), so the agents provably overlap and all three final runs become
ready at the same moment. Every run of a record (calibration, control and final runs) writes its own start and
end time; no two may overlap with the slot. With `--speedrun-timed-runs=3` (three slots, so none in effect) the
same check fails: that variant asserts the overlap it would otherwise catch.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest

from fakes import fake_record, manifest
from pytest_speedrun.execution.resources import FAKE_CORES_ENV

pytest_plugins = ["pytester"]

ITEMS = 3

# The run's own clock, around a fake record: it appends {"start", "end"} to RUN_TIMES when its work is done.
TIMED = '''\
import json as _json, os as _os, time as _time
_T0 = _time.time()
{body}
with open(_os.environ["RUN_TIMES"], "a") as _f:
    _f.write(_json.dumps({{"start": _T0, "end": _time.time()}}) + "\\n")
'''

# A command agent that changes nothing: it notes when it started, waits until all ITEMS agents have started
# (at most 20 s), works a little longer and appends {"start", "end", "met"}.
AGENT = '''\
import json, os, sys, time
from pathlib import Path
log, gate, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
start = time.time()
gate.mkdir(exist_ok=True)
(gate / str(os.getpid())).touch()
while len(list(gate.iterdir())) < n and time.time() < start + 20:
    time.sleep(0.02)
met = len(list(gate.iterdir())) >= n
time.sleep(0.3)
with open(log, "a") as f:
    f.write(json.dumps({"start": start, "end": time.time(), "met": met}) + "\\n")
'''


def _suite(root: Path, run_times: Path) -> Path:
    suite = root / "slot"
    (suite / "records").mkdir(parents=True)
    for k, work in ((1, 0.6), (2, 0.3)):
        (suite / "records" / f"record_{k}.py").write_text(TIMED.format(body=fake_record(work)))
    text = manifest("slot01", "records/record_1.py", "records/record_2.py", hints=False)
    text = text.replace('env = { NANOGPT_VAL_TOKENS = "4096" }',
                        f'env = {{ NANOGPT_VAL_TOKENS = "4096", RUN_TIMES = "{run_times}" }}')
    (suite / "slot01.toml").write_text(text)
    return suite


def _spans(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def overlapping(spans: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of spans that ran at the same time."""
    return [(a, b) for a, b in itertools.combinations(spans, 2) if a["start"] < b["end"] and b["start"] < a["end"]]


def test_overlapping_finds_only_spans_that_share_time() -> None:
    a, b, c = {"start": 0, "end": 2}, {"start": 1, "end": 3}, {"start": 3, "end": 4}
    assert overlapping([a, b, c]) == [(a, b)]


def test_timed_runs_must_be_a_positive_number(tmp_path: Path) -> None:
    from pytest_speedrun.errors import UsageError
    from pytest_speedrun.settings import build_settings

    with pytest.raises(UsageError, match=r"--speedrun-timed-runs=0: must be positive"):
        build_settings(agent=None, suites=[], hints="0", seeds=1, min_fsr=None, calibrate=False, calibration_runs=1,
                       results_dir=tmp_path / "r", cache_dir=tmp_path / "c", timeout_s=None, agent_timeout_s=60,
                       threads=None, python=None, data_dir=None, timed_runs=0)


def _session(pytester: pytest.Pytester, cache_dir: Path, monkeypatch, *options: str) -> tuple[list, list, str]:
    """One -n 3 session of the slot suite; (the record runs' spans, the agents' spans, its output)."""
    run_times, agent_times = pytester.path / "runs.jsonl", pytester.path / "agents.jsonl"
    suite = _suite(pytester.path, run_times)
    agent = pytester.path / "agent.py"
    agent.write_text(AGENT)
    monkeypatch.setenv(FAKE_CORES_ENV, "3")
    monkeypatch.setenv("SPEEDRUN_LEASE_DIR", str(pytester.path / "leases"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    command = f"command:{sys.executable} {agent} {agent_times} {pytester.path / 'gate'} {ITEMS}"
    result = pytester.runpytest_subprocess(
        f"--speedrun-suite={suite}", f"--speedrun-agent={command}", f"--speedrun-seeds={ITEMS}", "-n", str(ITEMS),
        f"--speedrun-cache-dir={cache_dir / 'slot'}", f"--speedrun-results={pytester.path / 'results'}",
        "--speedrun-calibrate", "--speedrun-agent-timeout=60", "-p", "no:cacheprovider",
        # Runs that start together on this 2-core machine can start slowly enough for the untimed-work rule;
        # that judges the runs, not whether they overlapped, which is all this test asks.
        "--speedrun-allow-suspicious", *options)
    result.assert_outcomes(passed=ITEMS)
    return _spans(run_times), _spans(agent_times), result.stdout.str()


def _agents_worked_side_by_side(agents: list[dict]) -> None:
    assert len(agents) == ITEMS and all(a["met"] for a in agents), agents  # all three were working at once
    assert len(overlapping(agents)) == ITEMS * (ITEMS - 1) // 2


@pytest.mark.slow
def test_timed_runs_never_overlap_while_agents_work_side_by_side(pytester: pytest.Pytester, cache_dir: Path,
                                                                 monkeypatch) -> None:
    runs, agents, out = _session(pytester, cache_dir, monkeypatch)
    _agents_worked_side_by_side(agents)
    print(f"one slot: {len(runs)} timed runs, {len(overlapping(runs))} overlapping pair(s)")
    # control runs, the start record, and one final run per item, each a timed run of its own
    assert len(runs) >= ITEMS + 2
    assert overlapping(runs) == []
    assert "runs queued for the timing slot and cores:" in out  # the final runs became ready together


@pytest.mark.slow
def test_without_the_slot_the_same_check_sees_timed_runs_overlap(pytester: pytest.Pytester, cache_dir: Path,
                                                                  monkeypatch) -> None:
    """The check above can fail: three slots on three fake run cores let the three final runs, ready at the
    same moment once the agents' barrier opens, run at once."""
    runs, agents, _ = _session(pytester, cache_dir, monkeypatch, f"--speedrun-timed-runs={ITEMS}")
    _agents_worked_side_by_side(agents)
    print(f"{ITEMS} slots: {len(runs)} timed runs, {len(overlapping(runs))} overlapping pair(s)")
    assert overlapping(runs), runs
