"""Timing noise: the run-to-run spread of train times, what it does to FSR, and whether a machine has moved.

Train times are treated as log-normal: a run's time is its script's true time on this machine times a factor
with a relative standard deviation `cv` (the run-to-run coefficient of variation). The spread is pooled over
every record calibrated on the machine (the factor does not depend on the script), so three runs of the
cheapest record plus one of every other already give an estimate with a few degrees of freedom, and each later
session's control runs add to it.

FSR = (a - x) / (a - b) with a = t_i, b = t_{i+1} and x = t'. Its interval comes from the delta method on the
three independent means, with Student's t quantile for the pooled degrees of freedom (the normal one for an
assumed spread). The amplification a / (a - b) is why late NanoGPT tasks (t_{i+1} close to t_i) need many runs.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from pytest_speedrun.results.stats import student_t_cdf

ASSUMED_CV = 0.01  # for references that carry no spread (the paper's times): 1% run-to-run, labelled "assumed"
LEVEL = 0.95  # every interval here is a 95% one
CHECK_ALPHA = 0.01  # the stale-reference check's false-alarm rate per session on an unchanged machine (nominal)
CONTROL_RUNS = 3  # control runs per session check


MIN_DF = 10  # a spread measured over fewer degrees of freedom never claims less than ASSUMED_CV (pooled_spread)


@dataclass(frozen=True)
class Spread:
    """Run-to-run relative spread of train times on a machine: measured (with degrees of freedom) or assumed."""

    cv: float
    df: int | None  # None: assumed, not measured
    measured_cv: float | None = None  # the pooled estimate, where the MIN_DF floor raised `cv` above it

    @property
    def assumed(self) -> bool:
        return self.df is None

    def describe(self) -> str:
        if self.df is None:
            return f"{self.cv:.1%} run-to-run CV (assumed)"
        floor = (f"; {self.measured_cv:.2%} raised to the assumed {self.cv:.1%}, the floor below {MIN_DF}"
                 if self.measured_cv is not None else "")
        return f"{self.cv:.2%} run-to-run CV (measured, {self.df} degrees of freedom{floor})"

    def to_json(self) -> dict:
        return asdict(self)


RESOLUTION_MS = 1.0  # train_time is logged in whole milliseconds


def pooled_spread(groups: Iterable[Sequence[float]]) -> Spread | None:
    """The pooled relative spread of several groups of train times of the same script each (None with no group
    of 2 or more runs): the standard deviation of log times around each group's mean, plus the rounding of the
    logged times (RESOLUTION_MS, uniform: variance 1/12 of its square), so that identical times (a fast or fake
    script, or chance) never claim a spread of exactly zero. On a 10 s run the rounding adds 0.003% CV.

    Under MIN_DF degrees of freedom the estimate is never taken below ASSUMED_CV, the spread assumed with no
    measurement at all: a few runs made back to back can agree by chance far more closely than runs minutes
    apart do, and a score compares runs minutes apart. Student's t allows for the chance only where runs are
    independent, and back-to-back runs share the machine's state of the moment. On this project's 2-core VM
    (2-10% CV over minutes) the first cold session of 2026-12-05 measured 0.46% over 2 degrees of freedom, and
    an oracle item scored 0.94 with a 95% interval of [0.90, 0.98] (docs/timing.md, "Spread"). With 10 degrees
    of freedom the chance that the estimate is under half the true spread is below 1% (chi-square); with 2 it
    is 22%. A quiet GPU node (0.08% CV on 8xH100) gets wider intervals than it needs until its calibration and
    control runs reach MIN_DF: wide, never confidently wrong."""
    ss, df, rounding, n = 0.0, 0, 0.0, 0
    for times in groups:
        logs = [math.log(t) for t in times if t > 0]
        if len(logs) < 2:
            continue
        mean = statistics.fmean(logs)
        ss += sum((v - mean) ** 2 for v in logs)
        df += len(logs) - 1
        rounding += sum(RESOLUTION_MS**2 / 12 / t**2 for t in times if t > 0)
        n += len(logs)
    if df == 0:
        return None
    cv = math.sqrt(ss / df + rounding / n)
    if df < MIN_DF and cv < ASSUMED_CV:
        return Spread(cv=ASSUMED_CV, df=df, measured_cv=cv)
    return Spread(cv=cv, df=df)


def t_quantile(df: int | None, p: float = (1 + LEVEL) / 2) -> float:
    """The p quantile of Student's t with `df` degrees of freedom (the normal quantile for df None)."""
    if df is None:
        return statistics.NormalDist().inv_cdf(p)
    lo, hi = 0.0, 1000.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def fsr_half_width(x: float, n_x: int, a: float, n_a: int, b: float, n_b: int, spread: Spread) -> float:
    """Half-width of the 95% interval of FSR = (a - x) / (a - b), each time the mean of n runs with relative
    spread `spread.cv`."""
    d = a - b
    if d <= 0:
        return math.inf
    sa, sb, sx = (t * spread.cv / math.sqrt(max(1, n)) for t, n in ((a, n_a), (b, n_b), (x, n_x)))
    var = ((x - b) / d**2 * sa) ** 2 + ((a - x) / d**2 * sb) ** 2 + (sx / d) ** 2
    return t_quantile(spread.df) * math.sqrt(var)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2


def witnessed_half_width(x: float, n_x: int, a: float, n_a: int, b: float, n_b: int, n_w: int,
                         spread: Spread) -> float:
    """Half-width of the 95% interval of FSR = (a - x) / (a - b) where the references were rescaled by a witness:
    `a` is the witness (the start record timed next to the scored run, the mean of `n_w` runs) and `b` the target
    reference times a / (the start reference's mean of `n_a` runs). In those terms, with q = x / a:
    dFSR/dlog(start reference) = -dFSR/dlog(target reference) = -a b (1 - q) / (a - b)^2 and
    dFSR/dlog(x) = -dFSR/dlog(witness) = -x / (a - b); the four are independent."""
    d = a - b
    if d <= 0:
        return math.inf
    sa, sb, sx, sw = (spread.cv / math.sqrt(max(1, n)) for n in (n_a, n_b, n_x, n_w))
    q = x / a
    var = (a * b * (1 - q) / d**2) ** 2 * (sa**2 + sb**2) + (x / d) ** 2 * (sx**2 + sw**2)
    return t_quantile(spread.df) * math.sqrt(var)


def fsr_interval(fsr: float, x: float, n_x: int, a: float, n_a: int, b: float, n_b: int, spread: Spread,
                 slowdown: float = 0.0, speedup: float = 0.0, witness_runs: int = 0) -> Interval:
    """The 95% interval of an item's FSR. `slowdown`: the fraction by which something outside the run may have
    slowed it (measured contention, a slower machine); the run could have been that much faster, so the interval
    reaches up. `speedup`: the fraction by which the machine ran faster than when the references were measured;
    the interval reaches down. `witness_runs` > 0: `a` is a witness of that many runs and `b` was rescaled by it
    (`witnessed_half_width`); `n_a` stays the start reference's own runs."""
    half = (witnessed_half_width(x, n_x, a, n_a, b, n_b, witness_runs, spread) if witness_runs > 0
            else fsr_half_width(x, n_x, a, n_a, b, n_b, spread))
    reach = x * (1 - 1 / (1 + slowdown)) / (a - b) if slowdown > 0 and a > b else 0.0
    down = x * speedup / (a - b) if speedup > 0 and a > b else 0.0
    return Interval(fsr - half - down, fsr + half + reach)


def runs_for(target_half: float, x: float, a: float, b: float, spread: Spread, max_runs: int = 10,
             ) -> tuple[int, int] | None:
    """The cheapest (repeats of the solution, calibration runs per reference record) with an interval half-width
    under `target_half`, or None when none up to `max_runs` each does at this spread. Cost: total train time."""
    best = None
    for reps in range(1, max_runs + 1):
        for cal in range(1, max_runs + 1):
            exact = Spread(spread.cv, None if spread.df is None else max(spread.df, 30))
            if fsr_half_width(x, reps, a, cal, b, cal, exact) < target_half:
                cost = reps * x + cal * (a + b)
                if best is None or cost < best[0]:
                    best = (cost, reps, cal)
                break
    return None if best is None else (best[1], best[2])


CHECK_BAND = (0.015, 0.02)  # the stale check's tolerance on the control's ratio, clamped to this range


@dataclass(frozen=True)
class ShiftCheck:
    """A stale-reference check: do this session's control runs agree with the cached runs of the same script?"""

    ratio: float  # geometric mean of the control runs / that of the cached runs
    tolerance: float  # |log ratio| above this means the machine moved
    moved: bool

    def describe(self) -> str:
        verdict = "moved: re-measuring" if self.moved else "holds"
        return f"control {self.ratio - 1:+.1%} against the cache (tolerance ±{self.tolerance:.1%}): {verdict}"


def shift_check(control: Sequence[float], cached: Sequence[float], spread: Spread,
                alpha: float = CHECK_ALPHA) -> ShiftCheck:
    """Does the machine still run the control script at its cached speed? The tolerance is the two-sided `alpha`
    normal bound on the difference of mean log times at the pooled spread, clamped to CHECK_BAND: never tighter
    than 1.5% (the spread is estimated from few runs, and timing tails are heavier than normal), never looser
    than 2% (so a 3% slowdown is caught even while the spread is still overestimated; measured rates in
    benchmarks/stale_check.last.txt)."""
    c = [math.log(t) for t in control]
    r = [math.log(t) for t in cached]
    diff = statistics.fmean(c) - statistics.fmean(r)
    se = spread.cv * math.sqrt(1 / len(c) + 1 / len(r))
    tolerance = min(max(t_quantile(None, 1 - alpha / 2) * se, CHECK_BAND[0]), CHECK_BAND[1])
    return ShiftCheck(ratio=math.exp(diff), tolerance=tolerance, moved=abs(diff) > tolerance)


WITNESS_Z = 2.576  # a witness disagrees with its reference beyond this many SDs (two-sided 1% on a quiet machine)
WITNESS_WINDOW_S = 60.0  # a run of the start record this close to the scored run serves as its witness
WITNESS_PHRASE = "the witness, record"  # in the `disturbed` reason of an item whose witness disagreed
WINDOW_ENV = "SPEEDRUN_WITNESS_WINDOW_S"  # test seam: another window (0: every item times a witness run)


def witness_window_s() -> float:
    return float(os.environ.get(WINDOW_ENV, WITNESS_WINDOW_S))


@dataclass(frozen=True)
class Witness:
    """The start record timed next to the scored run (or its calibration run, when that ran this close): the
    machine's speed now against when its reference was measured. `ratio` > 1: the machine is slower now."""

    ms: float  # the witness's train_time
    reference_ms: float  # the start record's reference (the geometric mean of `n_reference` runs)
    n_reference: int
    record: int  # the start record's number
    reused: bool = False  # a calibration or control run of the start record, not a run of its own
    started_at: float | None = None  # wall-clock times of the witness run (None: not known)
    ended_at: float | None = None
    log_path: str = ""
    failed: str = ""  # why the witness run gave no time ("" when it did)

    @property
    def ratio(self) -> float:
        return self.ms / self.reference_ms

    def gap_s(self, scored_started_at: float, scored_ended_at: float) -> float | None:
        """Seconds between the witness and the scored run(s), whichever came first (None: a time is unknown)."""
        if self.ended_at is not None and scored_started_at and self.ended_at <= scored_started_at:
            return scored_started_at - self.ended_at
        if self.started_at is not None and scored_ended_at:
            return self.started_at - scored_ended_at
        return None


def witness_check(witness: Witness, spread: Spread) -> ShiftCheck:
    """Does the witness agree with its reference? One run (or n) against the reference's mean of n_reference at
    the pooled spread, at WITNESS_Z normal SDs (the spread's few degrees of freedom would make Student's t
    tolerance too loose to ever fire), never tighter than CHECK_BAND's floor (a fake script's spread is ~0)."""
    diff = math.log(witness.ratio)
    se = spread.cv * math.sqrt(1 + 1 / max(1, witness.n_reference))
    tolerance = max(WITNESS_Z * se, CHECK_BAND[0])
    return ShiftCheck(ratio=witness.ratio, tolerance=tolerance, moved=abs(diff) > tolerance)


def witness_reason(witness: Witness, check: ShiftCheck) -> str:
    """The `disturbed` reason of an item whose witness disagreed with its reference ("" when it agreed)."""
    if not check.moved:
        return ""
    return (f"the machine ran {abs(check.ratio - 1):.0%} {'slower' if check.ratio > 1 else 'faster'} than when "
            f"the references were measured ({WITNESS_PHRASE} {witness.record} timed next to the scored run: "
            f"{witness.ms:.0f} ms against {witness.reference_ms:.0f} ms, tolerance ±{check.tolerance:.1%})")


BUSY_LIMIT = 0.25  # other cores busier than this during a run: the run is disturbed (see docs/timing.md)
# A run whose work waited for its own core while another process held it (the pump's `wait_s`, see
# pump.disturbing_wait), or that lost its core to the hypervisor, more than this fraction of its time is disturbed.
# A run's own threads queuing behind each other are not counted: that is the script's doing, on every run alike.
WAIT_LIMIT = 0.01
BUSY_SLOWDOWN = 1.0  # how much a fully busy neighbour core can slow a pinned run, at most (docs/timing.md)


DRIFT_LIMIT = 0.05  # the pump's CPU probe this much off the references' own: the machine's speed moved


def drift(cpu: dict[str, float], reference_probe_s: float | None) -> float:
    """How much slower (> 0) or faster (< 0) the machine ran during this run than while its references were
    measured, by the pump's CPU probe (0 when either figure is missing)."""
    probe = cpu.get("probe_s")
    if not probe or not reference_probe_s:
        return 0.0
    return probe / reference_probe_s - 1


def disturbance(wait: float, cpu: dict[str, float], reference_probe_s: float | None = None) -> str:
    """Why a run's time says more about the machine than about the script ("" if it ran undisturbed). `wait`: the
    fraction of its wall time the run's work waited for its own core while another process held it (the pump's
    `wait_s` over `wall_s`; stats written before the pump counted it that way hold every thread's wait, a
    stricter figure); `cpu`: the pump's accounting (pump.py); `reference_probe_s`: the pump's CPU probe while the
    references were measured."""
    busy, steal = cpu.get("others_busy", 0.0), cpu.get("steal", 0.0)
    moved = drift(cpu, reference_probe_s)
    if abs(moved) > DRIFT_LIMIT:
        return (f"the machine ran {abs(moved):.0%} {'slower' if moved > 0 else 'faster'} than when the references "
                "were measured (the pump's CPU probe)")
    if wait > WAIT_LIMIT:
        return f"the run waited {wait:.1%} of its time for its own core (held by other processes)"
    if steal > WAIT_LIMIT:
        return f"the hypervisor took {steal:.1%} of the run's core time"
    if busy > BUSY_LIMIT:
        return f"the other cores were {busy:.0%} busy during the run"
    return ""


def slowdown_bound(wait: float, cpu: dict[str, float], reference_probe_s: float | None = None) -> float:
    """How much slower than undisturbed a run may have been, by what the pump saw (0 for an undisturbed run). The
    wait counts once: it is the working threads' average delay, not a sum over threads."""
    if not disturbance(wait, cpu, reference_probe_s):
        return 0.0
    busy = cpu.get("others_busy", 0.0)
    moved = max(0.0, drift(cpu, reference_probe_s))
    return wait + cpu.get("steal", 0.0) + (BUSY_SLOWDOWN * busy if busy > BUSY_LIMIT else 0.0) + \
        (2 * moved if moved > DRIFT_LIMIT else 0.0)


def judge_machine(runs: list[tuple[float, dict[str, float]]], reference_probe_s: float | None,
                  witness: Witness | None, check: ShiftCheck | None) -> tuple[str, float, float]:
    """What the machine did to an item's scored runs: its `disturbed` reason ("" if none), how much slower and how
    much faster than undisturbed the runs may have been (for `fsr_interval`). `runs`: each run's wait fraction and
    pump accounting (see `disturbance`); `check`: the witness's agreement with its reference (None when no witness
    ran of its own).

    Where a witness stands (a run of its own, or a calibration run just before, see docs/timing.md, "Witness"),
    it is the measure of the machine's speed, and the pump's CPU probe is not consulted: the witness is the start
    record itself, timed next to the scored run, where the probe is a 90 ms loop that lives in L1 and whose
    correlation with the runs' times was -0.09 to +0.36 (benchmarks/noise_sources.last.txt). Consulting it beside
    a witness flagged 14 of 16 items that the witness had scored within their intervals (issue 20). Without a
    witness the probe is all there is to see a move of the machine's speed since calibration, and it still flags.
    The run queue, the hypervisor's steal and busy neighbours flag either way: they are this run's own."""
    probe = None if witness is not None and not witness.failed else reference_probe_s
    reasons = [why for wait, cpu in runs if (why := disturbance(wait, cpu, probe))][:1]
    if witness is not None and witness.failed:
        reasons.append(f"the witness run of record {witness.record} gave no time: {witness.failed}")
    elif witness is not None and check is not None and check.moved:
        reasons.insert(0, witness_reason(witness, check))
    slowdown = max((slowdown_bound(wait, cpu, probe) for wait, cpu in runs), default=0.0)
    faster = max(0.0, -min((drift(cpu, probe) for _, cpu in runs), default=0.0))
    return "; ".join(reasons), slowdown, 2 * faster if faster > DRIFT_LIMIT else 0.0


def advice(task: str, interval: Interval, fsr: float, x: float, a: float, b: float, spread: Spread) -> str:
    """The summary line for an item whose interval is wider than ±0.2 (else ""): the noise, and what would bring
    the interval under ±0.1."""
    if interval.half <= 0.2:
        return ""
    need = runs_for(0.1, x, a, b, spread)
    fix = (f"--speedrun-repeats={need[0]} and --speedrun-calibration-runs={need[1]} would bring it under ±0.1"
           if need else "no number of repeats or calibration runs (up to 10 each) would bring it under ±0.1")
    return f"{task}: FSR {fsr:.2f} ± {interval.half:.2f} at {spread.describe()}; {fix}"


def precision_rows(tasks: Iterable, cv: float = 0.01, reference_runs: int = 3) -> list[str]:
    """The README's table of what ±0.1 costs per task at a run-to-run `cv`, for an oracle-like t' = t_(i+1):
    the amplification, the half-width with one run against `reference_runs`-run references, the repeats that
    reach ±0.1 with such references (or the floor no number of repeats gets under), and the cheapest plan."""
    spread = Spread(cv, None)
    rows = []
    for t in tasks:
        a, b = t.start.train_time_ms, t.target.train_time_ms
        one = fsr_half_width(b, 1, a, reference_runs, b, reference_runs, spread)
        reps = next((r for r in range(1, 101)
                     if fsr_half_width(b, r, a, reference_runs, b, reference_runs, spread) < 0.1), None)
        floor = fsr_half_width(b, 10**9, a, reference_runs, b, reference_runs, spread)
        plan = runs_for(0.1, b, a, b, spread)
        rows.append(f"| {t.id} | {t.start.record} → {t.target.record} | {a / (a - b):.1f} | ±{one:.2f} | "
                    f"{reps if reps else f'none: ±{floor:.2f} at any number'} | "
                    f"{f'{plan[0]} repeats, {plan[1]} calibration runs' if plan else 'none up to 10 each'} |")
    return rows
