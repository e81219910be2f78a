"""What an item result looks like to people and CI: JUnit properties, failure messages, the summary table."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .harness import ItemResult
from .integrity import AGENT_ERROR, PASSED
from .runner import tail

PROPERTY_KEYS = ("agent", "hints", "seed", "status", "val_loss", "train_time_ms", "t_start_ms", "t_target_ms",
                 "speedup", "fsr", "artifact_dir", "reference_source", "reasons")


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, (tuple, list)):
        return "; ".join(str(v) for v in value)
    return value


def user_properties(result: ItemResult) -> list[tuple[str, Any]]:
    """(name, value) pairs for `item.user_properties`: they reach JUnit XML and travel across xdist."""
    data = result.to_json()
    return [("speedrun_task", result.task)] + [(k, _fmt(data[k])) for k in PROPERTY_KEYS]


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


def _num(value: Any, fmt: str) -> str:
    return "-" if value in (None, "") else format(float(value), fmt)


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The terminal table: one row per item, sorted by node id, then the mean FSR."""
    header = ("item", "status", "val_loss", "train_ms", "t_i_ms", "t_i+1_ms", "speedup", "FSR")
    body = [
        (r["nodeid"].rsplit("/", 1)[-1].rsplit("::", 1)[-1], r["status"], _num(r["val_loss"], ".4f"),
         _num(r["train_time_ms"], ".0f"), _num(r["t_start_ms"], ".0f"), _num(r["t_target_ms"], ".0f"),
         _num(r["speedup"], ".3f"), _num(r["fsr"], ".3f"))
        for r in sorted(rows, key=lambda r: r["nodeid"])
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    out = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *body]]
    fsrs = [float(r["fsr"]) if r["status"] == PASSED and r["fsr"] != "" else 0.0 for r in rows]
    passed = sum(r["status"] == PASSED for r in rows)
    out.append(f"mean FSR: {statistics.fmean(fsrs):.3f} over {len(rows)} item(s), {passed} passed "
               "(items that did not pass count as FSR 0)")
    return out
