"""What an item result looks like to people and CI: JUnit properties, failure messages, the summary table.

The summary works on result records (record.ItemResult.to_json, with the item's node id added): on the
controller under xdist these are the records the workers attached to their reports (plugin.py)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from pytest_speedrun.execution.runner import tail
from pytest_speedrun.judging.status import AGENT_ERROR, CURRENT, PASSED, SMOKE, STEPS
from pytest_speedrun.results import stats
from pytest_speedrun.results.noise import WITNESS_PHRASE
from pytest_speedrun.results.record import ItemResult

PROPERTY_KEYS = ("agent", "model", "scaffold", "hints", "seed", "status", "val_loss", "train_time_ms",
                 "train_time_std_ms", "t_start_ms", "t_target_ms", "speedup", "fsr", "fsr_low", "fsr_high", "noise",
                 "reference_state", "train_time_observed_ms", "disturbed", "queued_s", "witness_ms",
                 "witness_ratio", "witness_reused", "witness_gap_s", "note", "repeats", "p_value",
                 "artifact_dir", "reference_source", "start_source", "config_key", "resumed", "mode", "slurm_job_id",
                 "slurm_node", "slurm_reattached", "runtime", "runtime_kind", "python", "torch", "compat", "metric",
                 "steps", "s_start", "s_target", "reasons")


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, (tuple, list)):
        return "; ".join(str(v) for v in value)
    return value


USAGE_KEYS = ("calls", "input_tokens", "output_tokens", "cost_usd")  # LLM agents' usage (Solution.usage)


def user_properties(result: ItemResult) -> list[tuple[str, Any]]:
    """(name, value) pairs for `item.user_properties`: they reach JUnit XML and travel across xdist."""
    data = result.to_json()
    props = [("speedrun_task", result.task)] + [(k, _fmt(data[k])) for k in PROPERTY_KEYS]
    if "calls" in result.usage:
        props += [(k, _fmt(result.usage.get(k))) for k in USAGE_KEYS]
    return props


def failure_message(result: ItemResult, min_fsr: float | None = None) -> str | None:
    """None if the item passes; otherwise a readable message with status, figures, log path and log tail."""
    if result.status == PASSED and (min_fsr is None or (result.fsr is not None and result.fsr >= min_fsr)):
        return None
    head = f"{result.task} [{result.agent}, hints {result.hints}, seed {result.seed}]: status {result.status}"
    if result.status == PASSED:
        head += f" but FSR {result.fsr:.3f} < --speedrun-min-fsr {min_fsr:g}"
    lines = [head + (f": {'; '.join(result.reasons)}" if result.reasons else "")]
    if result.status == AGENT_ERROR:
        agent_log = Path(result.artifact_dir) / "agent.log"
        lines.append(f"  artifacts: {result.artifact_dir}")
        if agent_log.exists():
            lines += [f"  agent log: {agent_log}", "  --- last lines of the agent log ---"]
            lines += ["  " + ln for ln in tail(agent_log, 15).splitlines()]
        return "\n".join(lines)
    loss = f"{result.val_loss:.4f}" if result.val_loss is not None else "n/a"
    ttime = f"{result.train_time_ms:.0f} ms" if result.train_time_ms is not None else "n/a"
    lines.append(f"  val_loss: {loss} (target <= {result.target_val_loss:.4f})")
    lines.append(f"  train_time: {ttime} (t_i {result.t_start_ms:.0f} ms, t_i+1 {result.t_target_ms:.0f} ms, "
                 f"{result.reference_source})")
    if result.wall_s is not None:
        lines.append(f"  wall time: {result.wall_s:.1f} s")
    if result.log_path:
        lines += [f"  log: {result.log_path}", "  --- last lines of the log ---"]
        lines += ["  " + ln for ln in tail(Path(result.log_path), 15).splitlines()]
    return "\n".join(lines)


def aggregate_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per configuration: benchmark score (mean over tasks of the mean FSR over seeds) ± std over seeds, IQM
    with its bootstrap 95% CI; then the paper's figure where model, scaffold and hints match."""
    aggregates = stats.aggregate(rows)
    out = []
    for agg in aggregates:
        out.append(f"{agg.label}: score {agg.score:.3f} [{agg.score_ci[0]:.3f}, {agg.score_ci[1]:.3f}] (95%), "
                   f"std {agg.score_std:.3f} over seeds, {len(agg.tasks)} task(s), "
                   f"IQM {agg.iqm:.3f} [{agg.iqm_ci[0]:.3f}, {agg.iqm_ci[1]:.3f}] (95% CI), "
                   f"{agg.passed}/{agg.items} passed")
    for row in stats.paper_comparison(aggregates):
        model = row.model if row.paper_model in ("", row.model) else f"{row.paper_model} as {row.model}"
        out.append(f"paper ({model}, {row.scaffold}, hints {row.hints}): {row.paper_mean:.2f} ± "
                   f"{row.paper_std:.2f}; here {row.ours_mean:.3f} ± {row.ours_std:.3f}")
    return out


def suite_properties(rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """Session-level figures for the JUnit <testsuite> properties (written by the controller)."""
    rows = [r for r in rows if r.get("mode") != SMOKE]
    props: list[tuple[str, Any]] = [("speedrun_items", len(rows)),
                                    ("speedrun_passed", sum(r["status"] == PASSED for r in rows))]
    for agg in stats.aggregate(rows):
        name = "speedrun[" + agg.label.replace(" · ", ",") + "]"
        props += [(f"{name}.score", round(agg.score, 4)), (f"{name}.score_std", round(agg.score_std, 4)),
                  (f"{name}.score_ci_low", round(agg.score_ci[0], 4)),
                  (f"{name}.score_ci_high", round(agg.score_ci[1], 4)),
                  (f"{name}.iqm", round(agg.iqm, 4)), (f"{name}.iqm_ci_low", round(agg.iqm_ci[0], 4)),
                  (f"{name}.iqm_ci_high", round(agg.iqm_ci[1], 4))]
    return props


def _num(value: Any, fmt: str) -> str:
    return "-" if value in (None, "") else format(float(value), fmt)


def fsr_cell(fsr: Any, low: Any, high: Any) -> str:
    """`0.97 ± 0.05`, or `0.97 +0.30/-0.05` when the interval reaches further up (a disturbed run), or `1.00 exact`
    when the interval is the point (a steps score)."""
    if fsr in (None, ""):
        return "-"
    f = float(fsr)
    if low in (None, "") or high in (None, ""):
        return f"{f:.2f}"
    up, down = float(high) - f, f - float(low)
    if up == down == 0:
        return f"{f:.2f} exact"
    if abs(up - down) < 0.005:
        return f"{f:.2f} ± {down:.2f}"
    return f"{f:.2f} +{up:.2f}/-{down:.2f}"


def _measure_cells(r: dict[str, Any]) -> tuple[str, str, str]:
    """The train_ms, t_i_ms and t_i+1_ms cells; for a task scored by steps, its steps s', s_i and s_i+1."""
    if r.get("metric") == STEPS:
        return tuple(f"{_num(r.get(k), '.0f')} steps" for k in ("steps", "s_start", "s_target"))  # type: ignore
    return _num(r["train_time_ms"], ".0f"), _num(r["t_start_ms"], ".0f"), _num(r["t_target_ms"], ".0f")


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The terminal table: one row per item, sorted by node id, then the mean FSR (smoke items aside)."""
    slurm = any(r.get("slurm_job_id") not in (None, "") for r in rows)
    header = ("item", "status", "val_loss", "train_ms", "t_i_ms", "t_i+1_ms", "speedup", "FSR") + \
        (("slurm job",) if slurm else ())
    body = [
        (r["nodeid"].rsplit("/", 1)[-1].rsplit("::", 1)[-1],
         r["status"] + (" (resumed)" if r.get("resumed") else "")
         + (" (smoke)" if r.get("mode") == SMOKE else ""), _num(r["val_loss"], ".4f"),
         *_measure_cells(r),
         _num(r["speedup"], ".3f"), fsr_cell(r["fsr"], r.get("fsr_low"), r.get("fsr_high")))
        + ((f"{r.get('slurm_job_id') or '-'}@{r.get('slurm_node') or '-'}"
            + (" (re-attached)" if r.get("slurm_reattached") else ""),) if slurm else ())
        for r in sorted(rows, key=lambda r: r["nodeid"])
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    out = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *body]]
    smoke = [r for r in rows if r.get("mode") == SMOKE]
    if smoke:
        out.append(f"smoke: {sum(r['status'] == PASSED for r in smoke)}/{len(smoke)} start script(s) ran and "
                   "reported a validation line (val_loss not judged)")
    rows = [r for r in rows if r.get("mode") != SMOKE]
    if not rows:
        return out
    fsrs = [float(r["fsr"]) if r["status"] == PASSED and r.get("fsr") is not None else 0.0 for r in rows]
    low, high = stats.mean_ci(fsrs, [stats.fsr_sd(r) for r in rows])
    passed = sum(r["status"] == PASSED for r in rows)
    resumed = sum(r.get("resumed") for r in rows)
    out.append(f"mean FSR: {statistics.fmean(fsrs):.3f} [{low:.3f}, {high:.3f}] (95%) over {len(rows)} item(s), "
               f"{passed} passed (items that did not pass count as FSR 0)"
               + (f"; {resumed} resumed from the store" if resumed else ""))
    return out + runtime_lines(rows) + noise_lines(rows) + aggregate_lines(rows) + usage_lines(rows)


def runtime_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Which interpreter and torch the items ran on, and which compat fixes they used: one line per distinct
    (runtime, where from, torch, fixes), naming its tasks (nothing for items of tasks that name no runtime and
    ran in pytest's own interpreter)."""
    groups: dict[tuple, list[str]] = {}
    for r in rows:
        if not r.get("runtime") and not r.get("compat") and r.get("runtime_kind") in ("", None, CURRENT):
            continue
        key = (r.get("runtime") or "none", r.get("runtime_kind") or "?", r.get("torch") or "?",
               tuple(r.get("compat") or ()), r.get("python") or "")
        groups.setdefault(key, []).append(str(r["task"]))
    out = []
    for (runtime, kind, torch, compat, python), tasks in sorted(groups.items()):
        fixes = f"; compat: {', '.join(compat)}" if compat else ""
        out.append(f"runtime {runtime}: {kind}, torch {torch} ({python}){fixes}: "
                   + ", ".join(sorted(dict.fromkeys(tasks))))
    return out


def noise_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What the timing rested on: the references' state and spread, runs that queued for the timing slot or
    cores, the witnesses, and one line per item whose interval is wide or whose runs the machine disturbed."""
    out = []
    states: dict[str, int] = {}
    for r in rows:
        if r.get("reference_state"):
            states[r["reference_state"]] = states.get(r["reference_state"], 0) + 1
    if states:
        spread = next((r["noise"] for r in rows if r.get("noise")), "")
        out.append("references: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
                   + (f"; {spread}" if spread else ""))
    queued = [r for r in rows if float(r.get("queued_s") or 0) > 0]
    if queued:
        total = sum(float(r["queued_s"]) for r in queued)
        out.append(f"runs queued for the timing slot and cores: {len(queued)} item(s) waited {total:.0f} s in all "
                   "(timed CPU runs take turns on this host, --speedrun-timed-runs allows more at once; each gets "
                   "cores no other run holds)")
    out += witness_lines(rows)
    out += [str(r["note"]) for r in sorted(rows, key=lambda r: r["nodeid"]) if r.get("note")]
    return out


def witness_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line on the witnesses: how many items had one (timed, or reused from the calibration), how far the
    machine's speed moved by their ratios, and how many disagreed with their references (flagged)."""
    witnessed = [r for r in rows if r.get("witness_ms") not in (None, "")]
    if not witnessed:
        return []
    ratios = [float(r["witness_ratio"]) for r in witnessed]
    reused = sum(bool(r.get("witness_reused")) for r in witnessed)
    moved = sum(WITNESS_PHRASE in str(r.get("disturbed") or "") for r in witnessed)
    return [f"witness: {len(witnessed)} item(s) scored against the start record timed next to their run "
            f"({len(witnessed) - reused} witness run(s), {reused} reused from calibration); the machine's speed "
            f"against the references: {min(ratios) - 1:+.1%} to {max(ratios) - 1:+.1%}"
            + (f"; {moved} beyond the references' spread (flagged)" if moved else "")]


def usage_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The session's LLM usage in one line (empty when no item used an LLM)."""
    used = [r["usage"] for r in rows if "calls" in (r.get("usage") or {})]
    if not used:
        return []
    total = {k: sum(float(u.get(k) or 0) for u in used) for k in USAGE_KEYS}
    return [f"LLM usage: {total['calls']:.0f} call(s), {total['input_tokens']:.0f} input + "
            f"{total['output_tokens']:.0f} output tokens, ${total['cost_usd']:.4f} over {len(used)} item(s)"]
