"""Reports from one or more results stores: Markdown, a self-contained HTML page, and PNG plots.

Both text formats are rendered from one list of blocks (headings, paragraphs, tables, images), so they always
say the same thing. matplotlib is optional: without it the reports are complete except for the pictures.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_speedrun.judging.status import PASSED
from pytest_speedrun.results.stats import (
    ConfigAggregate,
    aggregate,
    configuration,
    hints_key,
    latest_records,
    paper_comparison,
)
from pytest_speedrun.results.store import read_records

# Known node kinds first in the node plot, in fixed colours; other kinds follow, sorted, in matplotlib's cycle.
NODE_COLOURS = {"improved": "tab:green", "unimproved": "tab:gray", "buggy": "tab:red"}
PLOTS_SKIPPED = "plots skipped: matplotlib not installed"
PLOT_TITLES = {
    "fsr_per_task": "FSR per task",
    "fsr_by_hints": "FSR by hint regime (mean over tasks)",
    "node_types": "Search nodes by outcome",
}


def load_records(paths: Iterable[str | Path]) -> list[dict]:
    """All records of the given stores, in order. Each path is a store directory or a results.jsonl file.

    Raises ResultsFormatError naming the file (and line) when a store is missing or a line is not a record
    (store.read_records decides what a bad line is).
    """
    return [rec for path in paths for rec in read_records(Path(path))]


# ------------------------------------------------------------------------------------------------ the document


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str


@dataclass(frozen=True)
class _Paragraph:
    text: str


@dataclass(frozen=True)
class _Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class _Image:
    title: str
    path: Path


_Block = _Heading | _Paragraph | _Table | _Image


def _pm(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def _statuses(counts: Sequence[tuple[str, int]]) -> str:
    # passed first, then the failure kinds alphabetically
    ordered = sorted(counts, key=lambda c: (c[0] != PASSED, c[0]))
    return ", ".join(f"{n} {status}" for status, n in ordered)


def _blocks(records: Sequence[Mapping[str, Any]], plots: Mapping[str, Path] | None) -> list[_Block]:
    blocks: list[_Block] = [_Heading(1, "Speedrun report")]
    if not records:
        return blocks + [_Paragraph("No results.")]
    aggs = aggregate(records)
    items = sum(a.items for a in aggs)
    superseded = f" ({len(records) - items} superseded by a later run of the same item)" if len(records) > items else ""
    blocks.append(_Paragraph(
        f"{items} item result(s){superseded}, {len(aggs)} configuration(s). FSR = (t_i − t′) / (t_i − t_i+1); items "
        "that did not pass count as FSR 0. Score: mean over tasks of the mean FSR over seeds, ± the std over "
        "seeds of the per-seed score. IQM: 25%-trimmed mean of all item FSRs, with a 95% percentile-bootstrap CI."))

    blocks.append(_Heading(2, "Configurations"))
    blocks.append(_Table(
        ("configuration", "agent", "model", "scaffold", "hints", "items", PASSED, "score (mean FSR ± std)",
         "IQM [95% CI]"),
        tuple((a.label, a.agent, a.model or "-", a.scaffold or "-", a.hints, str(a.items), str(a.passed),
               _pm(a.score, a.score_std), f"{a.iqm:.3f} [{a.iqm_ci[0]:.3f}, {a.iqm_ci[1]:.3f}]") for a in aggs)))

    blocks.append(_Heading(2, "Per task"))
    blocks.append(_Paragraph("Mean FSR ± std over seeds, and the items' statuses."))
    tasks = sorted({t.task for a in aggs for t in a.tasks})
    rows = []
    for task in tasks:
        cells = [task]
        for a in aggs:
            t = next((t for t in a.tasks if t.task == task), None)
            cells.append("-" if t is None else f"{_pm(t.mean_fsr, t.std_fsr)} ({_statuses(t.statuses)})")
        rows.append(tuple(cells))
    blocks.append(_Table(("task", *(a.label for a in aggs)), tuple(rows)))

    paper = paper_comparison(aggs)
    if paper:
        blocks.append(_Heading(2, "Compared with the paper"))
        blocks.append(_Paragraph("Mean FSR ± std over runs; the paper's figures are from Table 3 of arXiv "
                                 "2506.22419 (19 NanoGPT tasks, 8×H100), so they compare only on that suite."))
        blocks.append(_Table(("model", "scaffold", "hints", "ours", "paper"),
                             tuple((r.model, r.scaffold, r.hints, _pm(r.ours_mean, r.ours_std),
                                    _pm(r.paper_mean, r.paper_std)) for r in paper)))

    if plots is not None:
        blocks.append(_Heading(2, "Plots"))
        if not plots:
            blocks.append(_Paragraph(PLOTS_SKIPPED))
        for name, path in plots.items():
            blocks.append(_Image(PLOT_TITLES.get(name, name), Path(path)))
    return blocks


# -------------------------------------------------------------------------------------------------- Markdown/HTML


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(records: Sequence[Mapping[str, Any]], plots: Mapping[str, Path] | None = None) -> str:
    """The report as Markdown: configurations, per-task results, the paper side by side, plot links.

    `plots` as returned by `make_plots`: None leaves the plot section out; an empty dict notes that the plots
    were skipped because matplotlib is not installed. Image links use the paths as given.
    """
    out: list[str] = []
    for block in _blocks(records, plots):
        if isinstance(block, _Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, _Paragraph):
            out.append(block.text)
        elif isinstance(block, _Table):
            lines = ["| " + " | ".join(_md_cell(h) for h in block.header) + " |",
                     "|" + "|".join("---" for _ in block.header) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
        else:
            out.append(f"![{block.title}]({block.path.as_posix()})")
    return "\n\n".join(out) + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1f2328; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.75rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tbody tr:nth-child(even) { background: #fbfcfd; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { font-size: 0.9rem; color: #57606a; }
""".strip()


def render_html(records: Sequence[Mapping[str, Any]], plots: Mapping[str, Path] | None = None) -> str:
    """The same report as one self-contained HTML page: inline CSS, plots embedded as base64 PNG data URIs."""
    body: list[str] = []
    esc = html.escape
    for block in _blocks(records, plots):
        if isinstance(block, _Heading):
            body.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, _Paragraph):
            body.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, _Table):
            head = "".join(f"<th>{esc(h)}</th>" for h in block.header)
            rows = "\n".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            body.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>")
        else:
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{esc(block.title)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{esc(block.title)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>Speedrun report</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


# ------------------------------------------------------------------------------------------------------- plots


def _node_counts(records: Sequence[Mapping[str, Any]], aggs: Sequence[ConfigAggregate]) -> dict[str, list[int]]:
    """{node kind: [count per configuration]} over the records that carry `nodes`."""
    index = {a.key: i for i, a in enumerate(aggs)}
    counts: dict[str, list[int]] = {}
    for rec in latest_records(records):
        for node in rec.get("nodes") or ():
            kind = str(node.get("kind", "unknown")) if isinstance(node, Mapping) else "unknown"
            counts.setdefault(kind, [0] * len(aggs))[index[configuration(rec)]] += 1
    order = [k for k in NODE_COLOURS if k in counts] + sorted(k for k in counts if k not in NODE_COLOURS)
    return {k: counts[k] for k in order}


def _yerr(heights: list[float], cis: list[tuple[float, float]]) -> list[list[float]]:
    """matplotlib's asymmetric error bars from intervals (never negative: a missing interval is (0, 0))."""
    return [[max(0.0, h - lo) if (lo, hi) != (0.0, 0.0) else 0.0 for h, (lo, hi) in zip(heights, cis)],
            [max(0.0, hi - h) if (lo, hi) != (0.0, 0.0) else 0.0 for h, (lo, hi) in zip(heights, cis)]]


def make_plots(records: Sequence[Mapping[str, Any]], out_dir: str | Path) -> dict[str, Path]:
    """Draw the report's PNGs into `out_dir`; returns {name: path}, or {} when matplotlib is not installed.

    fsr_per_task: grouped bars, one per configuration, with 95% intervals as error bars (the items' own timing
                  noise and the spread over seeds).
    fsr_by_hints: the benchmark score per hint regime, one bar per (agent, model, scaffold), with its 95% interval.
    node_types:   stacked counts of search nodes by kind per configuration, only when records carry `nodes`.
    """
    try:
        # The Agg canvas directly, not pyplot: no global backend switch, no figure registry to leak.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return {}
    if not records:
        return {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    aggs = aggregate(records)
    plots: dict[str, Path] = {}

    def save(fig: Figure, name: str) -> None:
        FigureCanvasAgg(fig)
        path = out / f"{name}.png"
        # bbox_inches="tight" keeps the legend below the axes inside the picture
        fig.savefig(path, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
        plots[name] = path

    def legend_below(ax: Any) -> None:
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)

    def grouped_bars(ax: Any, groups: list[str], series: list[tuple[str, list[float], Any]]) -> None:
        width = 0.8 / max(len(series), 1)
        for i, (label, heights, errors) in enumerate(series):
            xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, heights, width, yerr=errors, capsize=3 if errors else 0, label=label)
        ax.set_xticks(range(len(groups)), groups)
        ax.axhline(0.0, color="black", linewidth=0.8)
        legend_below(ax)

    tasks = sorted({t.task for a in aggs for t in a.tasks})
    fig = Figure(figsize=(max(6.0, 0.4 * len(tasks) * len(aggs) + 2), 4.5))
    ax = fig.add_subplot()
    series = []
    for a in aggs:
        by_task = {t.task: t for t in a.tasks}
        heights = [by_task[t].mean_fsr if t in by_task else 0.0 for t in tasks]
        cis = [by_task[t].fsr_ci if t in by_task else (0.0, 0.0) for t in tasks]
        series.append((a.label, heights, _yerr(heights, cis)))
    grouped_bars(ax, tasks, series)
    ax.set(title=PLOT_TITLES["fsr_per_task"], xlabel="task", ylabel="FSR (mean, 95% interval)")
    save(fig, "fsr_per_task")

    regimes = sorted({a.hints for a in aggs}, key=hints_key)
    bases = sorted({a.key[:3] for a in aggs})
    score = {a.key: a.score for a in aggs}
    score_ci = {a.key: a.score_ci for a in aggs}
    fig = Figure(figsize=(max(6.0, 1.2 * len(regimes) + 2), 4.5))
    ax = fig.add_subplot()
    grouped_bars(ax, regimes, [(" · ".join(p for p in base if p), [score.get((*base, h), 0.0) for h in regimes],
                                _yerr([score.get((*base, h), 0.0) for h in regimes],
                                      [score_ci.get((*base, h), (0.0, 0.0)) for h in regimes]))
                               for base in bases])
    ax.set(title=PLOT_TITLES["fsr_by_hints"], xlabel="hint regime", ylabel="benchmark score (mean FSR)")
    save(fig, "fsr_by_hints")

    nodes = _node_counts(records, aggs)
    if nodes:
        # only the configurations that ran a search scaffold
        cols = [i for i in range(len(aggs)) if any(counts[i] for counts in nodes.values())]
        fig = Figure(figsize=(max(6.0, 1.0 * len(cols) + 3), 4.5))
        ax = fig.add_subplot()
        bottom = [0] * len(cols)
        for kind, counts in nodes.items():
            heights = [counts[i] for i in cols]
            ax.bar(range(len(cols)), heights, 0.6, bottom=bottom, label=kind, color=NODE_COLOURS.get(kind))
            bottom = [b + h for b, h in zip(bottom, heights)]
        ax.set_xticks(range(len(cols)), [aggs[i].label for i in cols], rotation=20, ha="right")
        ax.set(title=PLOT_TITLES["node_types"], ylabel="nodes")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        save(fig, "node_types")
    return plots


# ------------------------------------------------------------------------------------------------------- report


def write_report(paths: Sequence[str | Path], out_dir: str | Path) -> tuple[Path, Path, dict[str, Path]]:
    """Write report.md, report.html and the plots into `out_dir` from the given stores; returns their paths."""
    records = load_records(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(records, out)
    md_path, html_path = out / "report.md", out / "report.html"
    # Markdown links relative to the report so the directory can be moved; HTML embeds the files.
    md_path.write_text(render_markdown(records, {k: Path(p.name) for k, p in plots.items()}), encoding="utf-8")
    html_path.write_text(render_html(records, plots), encoding="utf-8")
    return md_path, html_path, plots
