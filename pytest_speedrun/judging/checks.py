"""The one judging call: every check a run of an agent's script goes through, for search nodes and final runs alike.

`check()` assembles, in this order: the run verdicts (integrity.judge, already on each Execution), the repeats'
t-test, the workspace leak scan, the static rules (env contract, near-copy of the target, val path), the data
guard, the timeline rules (the harness's own clock against the script's), the suspicion rules, and the final
verdict. Nothing else decides a status.

Timeline rules (see docs/integrity.md for the bounds and why):

* reported train_time below the harness-observed training time by more than CLOCK_BOUND (relative) plus
  CLOCK_SLACK_MS is `tampered`: the script's clock ran slow. One-sided: lines that reach the harness late (a GPU
  script printing before it synchronises) only make the observed time *smaller*, never larger;
* more untimed training steps (warm-up before the clock's last start, or steps whose reported time did not
  advance) than the start record had is `suspicious`, with the counts;
* untimed work before the first training-step line beyond the start record's by more than PRE_STEP_FRACTION of
  t_i (at least PRE_STEP_FLOOR_S) plus PRE_STEP_SLACK of the start's own is `suspicious`: counted in CPU seconds
  where the pump recorded them (load cannot inflate those), and in wall seconds in any case;
* wall time in validation pauses (from a training-step line to the validation line after it, while the script's
  clock is stopped) beyond as many of the start record's pauses, by the same allowance, is `suspicious`: the
  clock stops there, so work hidden there is untimed. Per pause, so a solution may validate more often than its
  start record; the untimed-work rule bounds what many extra validations could hide.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pytest_speedrun.judging import integrity, steps_contract
from pytest_speedrun.judging.integrity import Verdict
from pytest_speedrun.judging.leaks import leak_reasons
from pytest_speedrun.judging.sources import run_files
from pytest_speedrun.judging.static_rules import record_companions, static_reasons
from pytest_speedrun.judging.status import INVALID, PASSED
from pytest_speedrun.results import stats
from pytest_speedrun.results.scoring import Reference
from pytest_speedrun.tasks.manifest import Task

CLOCK_BOUND = 0.02  # genuine tiny runs agree within 0.01% (benchmarks/clock_agreement.last.txt); 2% leaves room
CLOCK_SLACK_MS = 100.0  # for the arrival jitter of the two lines that bound the timed region
PRE_STEP_FRACTION = 0.05  # untimed work before the first step line: at most 5% of t_i beyond the start's ...
PRE_STEP_SLACK = 0.25  # ... plus 25% of the start's own (imports, data loading and model setup vary that much)
# ... and never less than this: interpreter start and imports jitter by tenths of a second on a loaded machine
# (a CI run of the fake mini suite, t_i 0.3 s, once took 0.13 s against the start's 0.1 s). It binds only
# below t_i = 20 s; a second of untimed work is under 2% of any real task's t_i.
PRE_STEP_FLOOR_S = 1.0
# The same allowance holds for the CPU seconds the run's processes used by the first step line
# (timeline.first_step_cpu_s). CPU time does not grow with load on the run's core or a cold page cache, which
# inflate the wall time by 60% (benchmarks/pre_step_noise.last.txt); it keeps the VM's own run-to-run noise. The
# wall rule stays for work the CPU does not see (GPU kernels while the host blocks).


@dataclass(frozen=True)
class Checked:
    """The item's (or node's) verdict and the figures it rests on."""

    verdict: Verdict
    mean_time_ms: float | None
    losses: tuple[float, ...]
    times: tuple[float, ...]
    p_value: float | None


def run_verdict(task: Task, runs: Sequence) -> tuple[Verdict, float | None]:
    """The first failing run decides; with repeats, validity is the speedrun's rule (one-sided t-test that the
    mean val_loss is below the target, p < 0.01)."""
    failing = next((ex for ex in runs if not ex.verdict.passed and ex.verdict.status != INVALID), None)
    if failing is not None:
        return failing.verdict, None
    if len(runs) < 2:
        return runs[0].verdict, None
    losses = [ex.metrics.val_loss for ex in runs if ex.metrics is not None]
    p_value = stats.one_sided_ttest_below(losses, task.target_val_loss)
    if p_value < 0.01:
        return Verdict(PASSED), p_value
    return Verdict(INVALID, (
        f"mean val_loss {statistics.fmean(losses):.4f} over {len(runs)} runs is not below the target "
        f"{task.target_val_loss:.4f} at p < 0.01 (p = {p_value:.3g})",)), p_value


def timeline_reasons(runs: Sequence, ref: Reference) -> tuple[list[str], list[str]]:
    """(tampered, suspicious) from the harness's own clock of each run (runs without a timeline are skipped)."""
    tampered: list[str] = []
    suspicious: list[str] = []
    for i, ex in enumerate(runs):
        tl, m = ex.timeline, ex.metrics
        if tl is None or m is None or tl.train_time_observed_ms is None:
            continue
        which = f"run {i + 1}: " if len(runs) > 1 else ""
        observed = tl.train_time_observed_ms
        if m.train_time_ms < observed * (1 - CLOCK_BOUND) - CLOCK_SLACK_MS:
            tampered.append(
                f"{which}reported train_time {m.train_time_ms:.0f} ms is below the harness-observed training time "
                f"{observed:.0f} ms ({m.train_time_ms / observed - 1:+.1%}; genuine runs agree within "
                f"{CLOCK_BOUND:.0%}): the script's clock does not time its training steps")
        untimed = tl.warmup_steps + tl.unclocked_steps
        if ref.start_untimed_steps is not None and untimed > ref.start_untimed_steps:
            suspicious.append(
                f"{which}{untimed} training steps ran outside the script's clock ({tl.warmup_steps} before it "
                f"started, {tl.unclocked_steps} while it did not advance); the start record has "
                f"{ref.start_untimed_steps}")
        cpu_flagged = False  # one reason for the work before the first step line: CPU seconds, else wall
        if ref.start_pre_step_cpu_s is not None and tl.first_step_cpu_s is not None:
            limit = untimed_limit(ref.start_pre_step_cpu_s, ref.t_start_ms)
            if cpu_flagged := tl.first_step_cpu_s > limit:
                suspicious.append(
                    f"{which}{tl.first_step_cpu_s:.1f} s of CPU time was used before the first training step line "
                    f"(the start record: {ref.start_pre_step_cpu_s:.1f} s; limit {limit:.1f} s): untimed work "
                    "before training")
        if ref.start_pre_step_s is not None and tl.first_step_s is not None and not cpu_flagged:
            limit = untimed_limit(ref.start_pre_step_s, ref.t_start_ms)
            if tl.first_step_s > limit:
                suspicious.append(
                    f"{which}{tl.first_step_s:.1f} s passed before the first training step line (the start record: "
                    f"{ref.start_pre_step_s:.1f} s; limit {limit:.1f} s): untimed work before training")
        if ref.start_val_pause_s is not None:
            paused = tl.val_pause_ms / 1000.0
            limit = untimed_limit(ref.start_val_pause_s * tl.val_pauses, ref.t_start_ms)
            if paused > limit:
                suspicious.append(
                    f"{which}{paused:.1f} s passed in {tl.val_pauses} validation pauses, from a training step line "
                    f"to the validation line (the start record: {ref.start_val_pause_s:.1f} s each; limit "
                    f"{limit:.1f} s): work while the clock is stopped for validation")
    return tampered, suspicious


def untimed_limit(start_s: float, t_start_ms: float) -> float:
    """The most untimed time a solution may take where the start record takes `start_s`: before the first
    training-step line (wall or CPU seconds), or in validation pauses."""
    return start_s * (1 + PRE_STEP_SLACK) + max(PRE_STEP_FRACTION * t_start_ms / 1000.0, PRE_STEP_FLOOR_S)


def _companions(task: Task, solution_dir: Path | None, script_name: str, start_text: str, solution_text: str,
                target_text: str | None) -> dict:
    """The other files each script runs (static_reasons' `*_files`): none without the solution's folder."""
    if solution_dir is None:
        return {}
    return {"solution_files": run_files(solution_dir, script_name, solution_text)[1:],
            "start_files": record_companions(task.start.script, script_name, start_text),
            "target_files": record_companions(task.target.script, script_name, target_text)}


def check(task: Task, ref: Reference, runs: Sequence, *, start_text: str, solution_text: str,
          target_text: str | None, scanned_dir: Path | None, regime: tuple[int, ...], script_name: str,
          extra_tampered: Sequence[str] = (), allow_suspicious: bool = False,
          start_shapes: steps_contract.Records | None = None, solution_dir: Path | None = None) -> Checked:
    """Judge one solution from its runs. `scanned_dir`: the directory whose files the leak scan reads (the
    workspace, or a node's directory; None for a trusted agent, whose target copy is by design, as is
    `target_text=None`). `extra_tampered`: what was found while it ran (the data guard, a reused node's reasons).
    `start_shapes`: a steps task's start record as its probe recorded it (steps_contract.py).
    `solution_dir`: the folder the solution ran from; the source rules then judge the script with every file it
    runs from there (sources.py), against the start and target records with theirs (None: the script alone)."""
    verdict, p_value = run_verdict(task, runs)
    done = [ex for ex in runs if ex.metrics is not None]
    losses = tuple(ex.metrics.val_loss for ex in done)
    times = tuple(ex.metrics.train_time_ms for ex in done)
    tampered = list(leak_reasons(scanned_dir, task, regime)) if scanned_dir is not None else []
    static_tampered, static_suspicious = static_reasons(start_text, solution_text, target_text, script_name,
                                                        **_companions(task, solution_dir, script_name, start_text,
                                                                      solution_text, target_text))
    clock_tampered, clock_suspicious = timeline_reasons(done, ref)
    tampered += static_tampered + list(extra_tampered) + clock_tampered
    if steps_contract.applies(task):  # the optimization track's contract, on what the runs recorded
        tampered += steps_contract.source_reasons(solution_text) + steps_contract.run_reasons(start_shapes or {}, done)
    mean_time = statistics.fmean(times) if times else None
    suspicious: list[str] = []
    if done and verdict.passed and mean_time is not None:
        mean_metrics = replace(done[0].metrics, val_loss=statistics.fmean(losses), train_time_ms=mean_time)
        wall = statistics.fmean(ex.outcome.wall_s for ex in done)
        if steps_contract.applies(task):  # scored by steps: the time rules do not bear on the score
            suspicious = steps_contract.suspicious_reasons(
                statistics.fmean(ex.metrics.steps for ex in done), mean_metrics.val_loss, task.target_val_loss,
                task.target.steps, integrity.LOSS_MARGIN)
        else:
            suspicious = integrity.suspicious_reasons(mean_metrics, wall, task.target_val_loss, ref.t_start_ms,
                                                      ref.t_target_ms, ref.start_steps, ref.start_untimed_s)
        suspicious += static_suspicious + clock_suspicious
    return Checked(verdict=integrity.final_verdict(verdict, tampered, suspicious, allow_suspicious),
                   mean_time_ms=mean_time, losses=losses, times=times, p_value=p_value)
