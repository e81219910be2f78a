"""The witness (docs/timing.md, "Witness"): the start record timed next to the scored run rescales the references.

The end-to-end tests use fake records whose reported train_time is exact (WORK_S times a scale read from a file,
in whole milliseconds; they sleep at least that long, so the harness's clock agrees): the machine "slows down" when
a `command:` agent rewrites the scale between calibration and the scored run. So every figure asserted is
computed from the record's own times, never a band on the machine's noise.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
import textwrap
from pathlib import Path

import pytest

from fakes import manifest
from pytest_speedrun.results import noise
from pytest_speedrun.results.noise import WITNESS_PHRASE, Spread, Witness, witness_check

EXACT_RECORD = '''\
import glob, os, struct, time
WORK_MS = {work_ms}
N = 10
scale = float(open({scale!r}).read())
train = sorted(glob.glob(os.environ["NANOGPT_TRAIN_FILES"]))
val = sorted(glob.glob(os.environ["NANOGPT_VAL_FILES"]))
assert train and val and struct.unpack("<3i", open(val[0], "rb").read(12))[:2] == (20240520, 1)
per_step = round(WORK_MS * scale) / N
start = time.time()
for step in range(N + 1):
    ms = per_step * step
    if step in (0, N):
        print(f"step:{{step}}/{{N}} val_loss:{{5.0 if step == 0 else 1.95:.4f}} train_time:{{ms:.0f}}ms "
              f"step_avg:{{ms / max(step, 1):.2f}}ms", flush=True)
    if step == N:
        break
    time.sleep(per_step / 1000)
    print(f"step:{{step + 1}}/{{N}} train_loss:3.0 train_time:{{ms + per_step:.0f}}ms step_avg:{{per_step:.2f}}ms",
          flush=True)
with open({runs!r}, "a") as f:
    f.write(f"{{os.getcwd()}} {{start}} {{time.time()}}\\n")
'''


def exact_suite(root: Path) -> tuple[Path, Path, Path]:
    """A suite 'exact' of one task (record 1: 600 ms, record 2: 300 ms, times the scale); the scale file and the
    file each run appends its directory, start and end time to."""
    suite = root / "exact"
    (suite / "records").mkdir(parents=True)
    scale, runs = root / "scale", root / "runs.txt"
    scale.write_text("1.0")
    for k, work in ((1, 600), (2, 300)):
        (suite / "records" / f"record_{k}.py").write_text(
            EXACT_RECORD.format(work_ms=work, scale=str(scale), runs=str(runs)))
    (suite / "exact01.toml").write_text(manifest("exact01", "records/record_1.py", "records/record_2.py",
                                                 hints=False).replace('suite = "mini"', 'suite = "exact"'))
    return suite, scale, runs


def slow_down_agent(scale: Path, factor: float) -> str:
    """A `command:` agent that leaves the script as it is (a baseline) and slows the machine while it works."""
    agent = scale.parent / f"agent-{factor}.py"
    agent.write_text(f"open({str(scale)!r}, 'w').write('{factor}')\n")
    return f"--speedrun-agent=command:{sys.executable} {agent}"


@pytest.fixture
def exact(pytester: pytest.Pytester, cache_dir: Path, monkeypatch: pytest.MonkeyPatch):
    suite, scale, runs = exact_suite(pytester.path / "suites")
    monkeypatch.setenv(noise.WINDOW_ENV, "0")  # always a witness run of its own (no calibration run reused)
    monkeypatch.setenv("SPEEDRUN_LEASE_DIR", str(pytester.path / "leases"))  # not queued behind other sessions

    def _run(*args: str) -> dict:
        pytester.runpytest(f"--speedrun-suite={suite}", f"--speedrun-cache-dir={cache_dir}", "-p",
                           "no:cacheprovider", *args).assert_outcomes(passed=1)
        return json.loads((pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()[-1])
    return _run, scale, runs


def runs_of(runs: Path) -> list[tuple[str, float, float]]:
    return [(d, float(a), float(b)) for d, a, b in (line.split() for line in runs.read_text().splitlines())]


def test_on_an_unchanged_machine_the_witness_runs_right_after_the_scored_run_and_the_baseline_scores_zero(
        exact) -> None:
    run, scale, runs = exact
    record = run(slow_down_agent(scale, 1.0))
    art = Path(record["artifact_dir"])
    (*_, (final_dir, _, final_end), (witness_dir, witness_start, _)) = runs_of(runs)
    assert Path(final_dir) == art / "workspace" and Path(witness_dir) == art / "witness"
    assert Path(record["witness_log"]) == art / "witness" / "run.log" and not record["witness_reused"]
    assert 0 <= witness_start - final_end < 5  # next to it, in the same lease: nothing ran between
    assert 0 <= record["witness_gap_s"] < 5
    assert (record["witness_ms"], record["witness_ratio"], record["t_start_ms"]) == (600, 1.0, 600)
    assert record["fsr"] == 0.0 and WITNESS_PHRASE not in record["disturbed"]
    assert record["fsr_low"] < 0 < record["fsr_high"]


def test_a_slower_machine_is_rescaled_away_and_flagged(exact) -> None:
    """The machine runs 30% slower from the agent on: the references (600 and 300 ms) are 30% fast against the
    scored run (780 ms). Against them the baseline would score -0.6; the witness (780 ms) rescales them to 780 and
    390, and the baseline scores exactly 0. The disagreement flags the item, and its interval covers both."""
    run, scale, _ = exact
    record = run(slow_down_agent(scale, 1.3))
    assert (record["train_time_ms"], record["witness_ms"]) == (780, 780)
    assert record["witness_ratio"] == pytest.approx(1.3)
    a, b = record["t_start_ms"] / record["witness_ratio"], record["t_target_ms"] / record["witness_ratio"]
    assert (a, b) == (pytest.approx(600), pytest.approx(300))  # the references as calibrated
    x = record["train_time_ms"]
    assert record["fsr"] == pytest.approx((record["t_start_ms"] - x) / (record["t_start_ms"] - record["t_target_ms"]))
    assert record["fsr"] == pytest.approx(0.0, abs=1e-12)
    plain = (a - x) / (a - b)
    assert plain == pytest.approx(-0.6)
    assert WITNESS_PHRASE in record["disturbed"] and "too noisy for a firm score" in record["note"]
    assert record["fsr_low"] <= plain and record["fsr_low"] < 0.0 < record["fsr_high"]


def test_a_witness_reuses_the_calibration_run_that_just_ran(exact, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(noise.WINDOW_ENV)
    run, scale, runs = exact
    record = run(slow_down_agent(scale, 1.0))
    assert record["witness_reused"] and 0 <= record["witness_gap_s"] <= noise.WITNESS_WINDOW_S
    assert not (Path(record["artifact_dir"]) / "witness").exists()
    assert [Path(d).name for d, _, _ in runs_of(runs)][-1] == "workspace"  # no run after the scored one


def test_a_manifest_referenced_task_gets_no_witness(exact, pytester: pytest.Pytester) -> None:
    run, scale, runs = exact
    toml = pytester.path / "suites" / "exact" / "exact01.toml"
    toml.write_text(toml.read_text().replace('source = "calibrate"', 'source = "manifest"'))
    record = run(slow_down_agent(scale, 1.0))
    assert record["witness_ms"] is None and record["reference_source"] == "manifest"
    assert [Path(d).name for d, _, _ in runs_of(runs)] == ["workspace"]


def test_the_witnessed_half_width_matches_a_simulation() -> None:
    """FSR from witness-rescaled references, each time log-normal around its truth: the delta method's SD."""
    rng = random.Random(7)
    a, b, x, cv = 1000.0, 600.0, 800.0, 0.03
    n_a, n_b, n_x, n_w = 3, 2, 1, 1
    sims = []
    for _ in range(20000):
        ma = a * math.exp(rng.gauss(0, cv / math.sqrt(n_a)))
        mb = b * math.exp(rng.gauss(0, cv / math.sqrt(n_b)))
        w = a * math.exp(rng.gauss(0, cv / math.sqrt(n_w)))
        mx = x * math.exp(rng.gauss(0, cv / math.sqrt(n_x)))
        r = w / ma
        sims.append((w - mx) / (w - mb * r))
    half = noise.witnessed_half_width(x, n_x, a, n_a, b * a / a, n_b, n_w, Spread(cv, None))
    assert half / 1.96 == pytest.approx(statistics.stdev(sims), rel=0.05)


def test_a_witness_beyond_the_spread_disagrees_and_one_within_it_does_not() -> None:
    spread = Spread(0.02, 10)
    near = Witness(ms=1030, reference_ms=1000, n_reference=3, record=4)
    far = Witness(ms=1300, reference_ms=1000, n_reference=3, record=4)
    assert not witness_check(near, spread).moved and witness_check(far, spread).moved
    assert witness_check(Witness(ms=1016, reference_ms=1000, n_reference=3, record=4), Spread(0.0, 5)).moved
    assert "30% slower" in noise.witness_reason(far, witness_check(far, spread))


def test_the_gap_is_measured_from_whichever_came_first() -> None:
    before = Witness(ms=1, reference_ms=1, n_reference=1, record=1, reused=True, ended_at=100.0)
    after = Witness(ms=1, reference_ms=1, n_reference=1, record=1, started_at=131.0, ended_at=140.0)
    assert before.gap_s(110.0, 130.0) == 10.0 and after.gap_s(110.0, 130.0) == 1.0


def test_the_summary_names_the_witnesses() -> None:
    from pytest_speedrun.results.summary import witness_lines
    rows = [{"witness_ms": 780, "witness_ratio": 1.3, "witness_reused": False,
             "disturbed": f"the machine ran 30% slower ({WITNESS_PHRASE} 1 ...)"},
            {"witness_ms": 600, "witness_ratio": 1.0, "witness_reused": True, "disturbed": ""}, {"witness_ms": None}]
    (line,) = witness_lines(rows)
    assert line == textwrap.dedent("""\
        witness: 2 item(s) scored against the start record timed next to their run (1 witness run(s), 1 reused from \
calibration); the machine's speed against the references: +0.0% to +30.0%; 1 beyond the references' spread \
(flagged)""")
