"""Build the `ladder` suite (tasks/ladder/) from a modded-nanogpt checkout at the pinned commit.

    python benchmarks/ladder_build.py --from /tmp/mn [--facts ../shared/reference/ladder_facts.toml] [--check]

`--from` is a folder holding the snapshot's `README.md` and `records/` (e.g. extracted with
`git -C <bare repo> archive HEAD records README.md | tar -x -C DIR`). Nothing of the snapshot is written into
the repository: the manifests pin each log by URL, size and sha256, and each section cut from it by sha256; the
reference times are parsed from the logs by our own parser (judging/metrics.py); the hints are our own words
(`ladder_hints.py`), checked by `ladder_hint_overlap.py`.

What it does, per track (1: GPT-2 small, 3.28; 2: GPT-2 medium, 2.92):
1. reads the README's record table (row number, time, upstream marks, linked log or folder);
2. per row, the comparable logs: the README-linked group (minus baseline/aux logs, see `_AUX_WORDS`), 8xH100
   only, every log parsed for its final val_loss/train_time/steps;
3. chains the rows: from record i the task goes to the next row whose logs are significantly faster (one-sided
   Welch test, p < 0.01; a side with < 3 runs gets the track's pooled run-to-run CV); skipped rows are listed;
4. writes the manifests, the reference table (`reference/ladder_times.toml`), the numbers-only facts copy
   (`reference/ladder_refs.toml`, from --facts), the runtimes, the hints and EXCLUDED.md.
Track 3 (optimization: fewest steps to 3.28; `records/track_3_optimization/README.md`'s "Notable results history")
is scored by steps: every run of each row's linked log (a file can hold up to 30, each starting again at
`step:0/N`) must end at `step:N/N`, N the row's steps; rows without a log, above the target, stopping early, or
whose README count differs from their log are excluded; consecutive remaining rows whose step count falls are
the tasks (`t3_<start>_<target>`, `metric = "steps"`, no hints).
`--check` writes nothing and fails when the committed files differ from what it would write.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ladder_hints import HINTS  # noqa: E402

from pytest_speedrun.errors import MetricsError  # noqa: E402
from pytest_speedrun.files import tomllib  # noqa: E402
from pytest_speedrun.judging.metrics import parse_text, scan  # noqa: E402
from pytest_speedrun.tasks.log_cut import MAIN, LogCutError, sections  # noqa: E402

COMMIT = "f411b3d346aa52d3504324ca93c230fd84c6c07f"
RAW = f"https://raw.githubusercontent.com/KellerJordan/modded-nanogpt/{COMMIT}/"
TRACK_DIR = {1: "records/track_1_short", 2: "records/track_2_medium"}
TARGET_LOSS = {1: 3.28, 2: 2.92, 3: 3.28}
FIRST_ROW = {1: 21, 2: 1}  # track 1: the paper's tasks end at record 21
ALPHA = 0.01
ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "tasks" / "ladder"
# path words of logs that are not the record's own runs (baselines, re-runs of the prior record, sweeps, 1-GPU)
_AUX_WORDS = ("baseline", "master", "prior", "comparison", "original_timing", "extra", "single_gpu", "val_every",
              "profiler")
# Where the README-linked group is not the record's comparable runs: (track, row) -> (group, why)
GROUP_OVERRIDES = {
    (1, 85): ("this_pr_v3", "the README links the whole folder; the folder's own notes name this_pr_v3 as the "
                            "submitted version (v1, v2 are earlier iterations of other scripts)"),
    (1, 88): ("prefix-1375-8x", "the README-linked logs (prefix-1375) ran on 1 GPU; the folder's 8-GPU runs of "
                                "the same change are used instead"),
}
_ROW = re.compile(r"^(\d+) ?\|")
_LOG_LINK = re.compile(r"\[log\]\((records/[^)]+)\)")
_GPU_LINE = re.compile(r"^\|\s+(\d+)\s+NVIDIA (H100|H200|A100|GH200)\b", re.MULTILINE)
_TORCH = re.compile(r"^Running PyTorch (\S+)", re.MULTILINE)
_PYTHON = re.compile(r"^Running Python (\d+\.\d+)", re.MULTILINE)
MARKS = ("*", "(!)", "Ⓧ")


@dataclass
class Run:
    path: str  # relative to the snapshot root
    size: int
    sha256: str
    val_loss: float
    train_time_ms: float
    steps: int
    gpus: str
    torch: str | None
    python: str | None
    needs: tuple[str, ...]  # notable imports beyond torch (NEEDS)
    cuts: dict[str, str]  # section -> sha256


@dataclass
class Row:
    track: int
    no: int
    time: str
    desc: str
    folder: str | None  # record folder name
    link: str | None  # README link path (relative to the snapshot root)
    marks: tuple[str, ...] = ()
    runs: list[Run] = field(default_factory=list)
    group: str = ""
    note: str = ""
    reason: str = ""  # why the row is not in the ladder (empty: it is)
    source: Run | None = None  # the log the scripts are cut from

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def mean(self) -> float:
        return statistics.fmean(r.train_time_ms for r in self.runs)

    @property
    def sd(self) -> float | None:
        return statistics.stdev(r.train_time_ms for r in self.runs) if self.n >= 2 else None


def readme_rows(readme: str) -> dict[int, list[Row]]:
    """The record tables of tracks 1 and 2, in README order (rows with several folders appear several times)."""
    rows: dict[int, list[Row]] = {1: [], 2: []}
    track = 0
    for line in readme.splitlines():
        if line.startswith("## World record history"):
            track = 1
        elif line.startswith("## Speedrun track 2"):
            track = 2
        elif line.startswith("## ") and track == 2:
            track = 3
        if not _ROW.match(line) or track not in (1, 2):
            continue
        cells = [c.strip() for c in line.split("|")]
        no, time, desc, rest = cells[0], cells[1], cells[2], "|".join(cells[4:])
        link = _LOG_LINK.search(rest)
        folder = link.group(1).split("/")[2] if link else None
        marks = tuple(mk for mk in MARKS if mk in time)
        rows[track].append(Row(track, int(no), time, desc, folder, link.group(1) if link else None, marks))
    return rows


def gpus_of(text: str) -> str:
    ids = {(int(i), model) for i, model in _GPU_LINE.findall(text[:200_000])}
    models = {model for _, model in ids}
    return f"{len(ids)}x {'/'.join(sorted(models))}" if ids else "unknown"


def parse_run(root: Path, path: Path) -> Run | None:
    data = path.read_bytes()
    text = data.decode("utf-8", errors="replace")
    try:
        m = parse_text(text)
        secs = sections(text)
    except (MetricsError, LogCutError):
        return None
    torch, python = _TORCH.search(text), _PYTHON.search(text)
    return Run(str(path.relative_to(root)), len(data), hashlib.sha256(data).hexdigest(), m.val_loss, m.train_time_ms,
               m.steps, gpus_of(text), torch.group(1) if torch else None, python.group(1) if python else None,
               tuple(n for n in ("flash_attn_interface", "kernels", "evals")
                     if re.search(rf"^\s*(from|import) {n}\b", "\n".join(secs.values()), re.MULTILINE)),
               {k: hashlib.sha256(v.encode()).hexdigest() for k, v in secs.items()})


def is_aux(rel: str) -> bool:
    return any(w in part.lower() for part in rel.split("/") for w in _AUX_WORDS)


def collect(root: Path, row: Row) -> None:
    """The row's comparable runs: its group's logs on 8xH100 (see the module docstring)."""
    if row.link is None or row.folder is None:
        row.reason = "no logs: the README row links no log"
        return
    folder = root / TRACK_DIR[row.track] / row.folder
    link = root / row.link
    if not link.exists():  # a folder renamed after the README linked it: find the linked file by name
        moved = sorted((root / TRACK_DIR[row.track]).glob(f"*/{link.name}"))
        if len(moved) != 1:
            row.reason = f"no logs: the README's link {row.link} leads nowhere in the snapshot"
            return
        link, folder, row.folder = moved[0], moved[0].parent, moved[0].parent.name
        row.link = str(link.relative_to(root))
        row.note = f"the README's link names a folder that does not exist; the log it names is in {row.folder}"
    if link.is_file() and parse_run(root, link) is None:
        row.reason = "no logs of a record script: the linked log holds no script above its output (llm.c)"
        return
    group = link if link.is_dir() else link.parent
    override = GROUP_OVERRIDES.get((row.track, row.no))
    if override:
        group, row.note = folder / override[0], override[1]
    row.group = str(group.relative_to(folder)) if group != folder else "."
    logs = sorted(p for p in group.rglob("*") if p.is_file() and p.suffix in (".txt", ".log"))
    runs = [r for p in logs if not is_aux(str(p.relative_to(folder))) and (r := parse_run(root, p))]
    parsed = [r for r in runs]
    row.runs = [r for r in parsed if r.gpus in ("8x H100", "unknown")]
    if any(r.gpus == "unknown" for r in row.runs):
        row.note = (row.note + "; " if row.note else "") + ("some logs print no GPU table; taken as 8x H100, "
                                                            "the hardware the track's rules require")
    if not parsed:
        row.reason = "no logs with a script and a final line (the linked log is not a record script's)"
        return
    if not row.runs:
        row.reason = f"non-comparable hardware: its logs ran on {parsed[0].gpus}, not 8x H100"
        return
    linked = [r for r in row.runs if r.path == row.link]
    row.source = linked[0] if linked else row.runs[0]


def welch_p(a: Row, b: Row, pooled_cv: float, pooled_df: int) -> tuple[float, bool]:
    """One-sided p that b is faster than a; a side with < 3 runs takes the pooled CV (and its df)."""
    from scipy import stats

    def var_df(r: Row) -> tuple[float, float, bool]:
        if r.n >= 3:
            return (r.sd or 0.0) ** 2 / r.n, r.n - 1, False
        return (pooled_cv * r.mean) ** 2 / r.n, pooled_df, True

    va, dfa, pa = var_df(a)
    vb, dfb, pb = var_df(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return (0.0 if b.mean < a.mean else 1.0), pa or pb
    t = (a.mean - b.mean) / se
    df = (va + vb) ** 2 / (va ** 2 / dfa + vb ** 2 / dfb)
    return float(stats.t.sf(t, df)), pa or pb


def pooled(rows: list[Row], min_n: int) -> tuple[float, int]:
    """Pooled run-to-run CV of train_time over rows with at least min_n runs, and its degrees of freedom."""
    num = df = 0.0
    for r in rows:
        if r.n >= min_n and r.sd is not None:
            num += (r.n - 1) * (r.sd / r.mean) ** 2
            df += r.n - 1
    return (math.sqrt(num / df), int(df)) if df else (float("nan"), 0)


@dataclass
class Pair:
    track: int
    start: Row
    target: Row
    p: float
    pooled_used: bool
    skipped: list[tuple[Row, float]]

    @property
    def id(self) -> str:
        return f"t{self.track}_{self.start.no:03d}_{self.target.no:03d}"


def build(root: Path) -> tuple[dict[int, list[Row]], dict[int, list[Pair]], dict[int, tuple[float, int, str]],
                                list[tuple[int, str, str]]]:
    readme = (root / "README.md").read_text(encoding="utf-8")
    rows = readme_rows(readme)
    used_folders: set[tuple[int, str]] = set()
    pairs: dict[int, list[Pair]] = {}
    spread: dict[int, tuple[float, int, str]] = {}
    for track, track_rows in rows.items():
        # a row listed with several folders (track 1, row 21): the last one is the newest re-timing
        by_no: dict[int, list[Row]] = {}
        for r in track_rows:
            by_no.setdefault(r.no, []).append(r)
        for no, same in by_no.items():
            for r in same[:-1]:
                r.reason = (f"re-timed: README row {no} lists several folders; the last ({same[-1].folder}) is the "
                            "re-timing under the rules and torch the following records use")
        for r in track_rows:
            if r.no < FIRST_ROW[track] and not r.reason:
                r.reason = "before the ladder: the paper's tasks (suite nanogpt) cover it"
            if not r.reason:
                collect(root, r)
        for r in track_rows:
            if r.folder and not r.reason:
                used_folders.add((track, r.folder))
        ok = [r for r in track_rows if not r.reason]
        cv, df = pooled(ok, 3)
        how = "records with 3 or more runs"
        if df < 3:
            cv1, df1, _ = spread[1]
            cv, df, how = cv1, df1, "track 1's (this track has too few records with 3 or more runs)"
        spread[track] = (cv, df, how)
        chain: list[Pair] = []
        i, skipped = ok[0], []
        for j in ok[1:]:
            p, used_pool = welch_p(i, j, cv, df)
            if p < ALPHA:
                chain.append(Pair(track, i, j, p, used_pool or any(s.n < 3 for s, _ in skipped), skipped))
                i, skipped = j, []
            else:
                skipped.append((j, p))
        for r, p in skipped:
            r.reason = f"not significantly faster than record {i.no} (p = {p:.3g}) and no later record is"
        for pair in chain:
            for r, p in pair.skipped:
                r.reason = (f"not significantly faster than record {pair.start.no} (one-sided Welch p = {p:.3g}); "
                            f"bridged by {pair.id}")
        pairs[track] = chain
    # every record folder: used, or why not
    folders: list[tuple[int, str, str]] = []
    for track, sub in TRACK_DIR.items():
        in_readme: dict[str, list[Row]] = {}
        for r in rows[track]:
            if r.folder:
                in_readme.setdefault(r.folder, []).append(r)
        used = {p.start.folder for p in pairs[track]} | {p.target.folder for p in pairs[track]}
        for d in sorted(p.name for p in (root / sub).iterdir() if p.is_dir()):
            if d in used:
                nos = sorted({r.no for r in in_readme.get(d, []) if not r.reason})
                folders.append((track, d, "used: record " + ", ".join(map(str, nos))))
            elif d in in_readme:
                folders.append((track, d, "; ".join(f"row {r.no}: {r.reason}" for r in in_readme[d])))
            else:
                folders.append((track, d, folder_reason(root / sub / d)))
    return rows, pairs, spread, folders


def folder_reason(folder: Path) -> str:
    """Why a folder without a README row is not a task (a copy is named as one)."""
    digest = _tree_digest(folder)
    for other in sorted(folder.parent.iterdir()):
        if other != folder and other.is_dir() and _tree_digest(other) == digest:
            return f"copy: byte for byte the same files as {other.name}; not in the README"
    logs = [p for p in folder.rglob("*") if p.is_file() and p.suffix in (".txt", ".log")]
    if not logs:
        return "no logs (and not in the README)"
    return "not in the README (no record row links it)"


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


# --- track 3: the optimization track, scored by steps ------------------------------------------------------

T3_DIR = "records/track_3_optimization"  # its own README.md holds the table; links are relative to this folder
T3_TABLE = "## Notable results history"
T3_BATCH_TOKENS = 8 * 64 * 1024  # the track fixes the batch (tokens per step) whatever the world size
SHARD_TOKENS = 10**8  # a FineWeb-10B training shard
_T3_ROW = re.compile(r"^\| (\d+) \| (\d+)(\(!\))? \|")
_T3_LOG = re.compile(r"\[log\]\(([^)]+)\)")
# a run of a multi-run log starts again at step 0 (up to 30 runs in one file)
_RUN_START = re.compile(r"^(?:\[(?:rank|default)\d+\]:\s?)?step:0/\d+ ", re.MULTILINE)


@dataclass
class Entry:
    """A row of track 3's table: README number and steps, the linked log, its runs, and why it is no task."""

    no: int
    readme_steps: int
    link: str | None  # relative to the snapshot root
    runs: list[Run] = field(default_factory=list)
    stopped: list[tuple[int, int]] = field(default_factory=list)  # (k, N) of runs whose last validation is k < N
    reasons: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return self.runs[0].steps  # all runs agree (judge_entry excludes the entry otherwise)

    @property
    def source(self) -> Run:
        return self.runs[0]  # every run is of the one linked log

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(r.train_time_ms for r in self.runs)

    @property
    def mean_loss(self) -> float:
        return statistics.fmean(r.val_loss for r in self.runs)

    @property
    def n_text(self) -> str:
        return f"{len(self.runs)} run(s) of {Path(self.source.path).name}"


@dataclass
class StepsPair:
    start: Entry
    target: Entry

    @property
    def id(self) -> str:
        return f"t3_{self.start.no:03d}_{self.target.no:03d}"


def track3_entries(readme: str) -> list[Entry]:
    """Every row of the README's "Notable results history" table, in README order."""
    if T3_TABLE not in readme:
        raise SystemExit(f"{T3_DIR}/README.md: no {T3_TABLE!r} section; is --from the snapshot at {COMMIT}?")
    table = readme.split(T3_TABLE, 1)[1].split("\n## ", 1)[0]
    out = []
    for line in table.splitlines():
        if m := _T3_ROW.match(line):
            link = _T3_LOG.search(line)
            out.append(Entry(int(m[1]), int(m[2]), f"{T3_DIR}/{link[1]}" if link else None))
    return out


def split_runs(text: str) -> list[str]:
    """A log's runs: from one `step:0/N` line to the next (the first run keeps the script and header above it)."""
    starts = [m.start() for m in _RUN_START.finditer(text)][1:]
    bounds = [0, *starts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def judge_entry(root: Path, e: Entry) -> None:
    """Parse every run of the entry's linked log; every reason it is no task goes to e.reasons."""
    if e.link is None or Path(e.link).suffix not in (".txt", ".log"):
        e.reasons.append(f"no log: the README links {Path(e.link).name if e.link else 'nothing'} as its log")
        return
    path = root / e.link
    if not path.is_file():
        e.reasons.append(f"no log: the README's link {e.link} leads nowhere in the snapshot")
        return
    data = path.read_bytes()
    text = data.decode("utf-8", errors="replace")
    try:
        secs = sections(text)
    except LogCutError as exc:
        e.reasons.append(f"no script to cut from the log: {exc}")
        return
    torch = _TORCH.search(text)
    needs = tuple(n for n in ("flash_attn_interface", "kernels", "evals")
                  if re.search(rf"^\s*(from|import) {n}\b", "\n".join(secs.values()), re.MULTILINE))
    cuts = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in secs.items()}
    early, broken = e.stopped, []
    for i, chunk in enumerate(split_runs(text), 1):
        vals = scan(chunk)[0]
        if not vals:
            broken.append(f"run {i} has no validation line")
            continue
        k, n = vals[-1][0], vals[-1][1]
        if k < n:
            early.append((k, n))
            continue
        try:
            m = parse_text(chunk)
        except MetricsError as exc:
            broken.append(f"run {i}: {exc}")
            continue
        e.runs.append(Run(str(path.relative_to(root)), len(data), hashlib.sha256(data).hexdigest(), m.val_loss,
                          m.train_time_ms, m.steps, gpus_of(text), torch.group(1) if torch else None, None, needs,
                          cuts))
    if broken:
        e.reasons.append("unparsable runs: " + "; ".join(broken))
    if early:
        stops = sorted(set(early))
        e.reasons.append(f"stops early on purpose: {len(early)} run(s) end with a last validation at "
                         f"{', '.join(f'step:{k}/{n}' for k, n in stops)}, below the planned total (the README "
                         f"counts {e.readme_steps})")
    if not e.runs:
        return
    planned = sorted({r.steps for r in e.runs})
    if len(planned) > 1:
        e.reasons.append(f"its runs disagree on the step count: they end at {', '.join(map(str, planned))}")
    elif planned[0] != e.readme_steps:
        e.reasons.append(f"the README's step count disagrees with its log: README {e.readme_steps}, the log's "
                         f"{len(e.runs)} run(s) end at step:{planned[0]}/{planned[0]}")
    if e.mean_loss > TARGET_LOSS[3]:
        e.reasons.append(f"above the target: its runs' mean final val_loss {e.mean_loss:.5f} > {TARGET_LOSS[3]}")
    if torch is None:
        e.reasons.append("its log prints no `Running PyTorch` line: no torch to name as its runtime")


def build_track3(root: Path) -> tuple[list[Entry], list[StepsPair], list[tuple[str, str]]]:
    """Track 3's entries (judged), its tasks (consecutive remaining entries whose step count falls), and every
    result folder or loose log the README does not link, with why."""
    entries = track3_entries((root / T3_DIR / "README.md").read_text(encoding="utf-8"))
    for e in entries:
        judge_entry(root, e)
    ok = [e for e in entries if not e.reasons]
    pairs = [StepsPair(a, b) for a, b in zip(ok, ok[1:]) if b.steps < a.steps]
    linked = {Path(e.link).relative_to(T3_DIR).parts[1:2] for e in entries if e.link}  # the results/ entry
    unlinked = []
    for p in sorted((root / T3_DIR / "results").iterdir()):
        if (p.name,) not in linked:
            unlinked.append((p.name, unlinked_reason(root, p)))
    return entries, pairs, unlinked


def unlinked_reason(root: Path, p: Path) -> str:
    """Why a result the README's table does not link is no task (its runs' mean loss, where it is a loose log)."""
    why = "not in the README's table (no row links it)"
    if p.is_file():
        e = Entry(0, 0, str(p.relative_to(root)))
        judge_entry(root, e)
        if e.runs and e.mean_loss > TARGET_LOSS[3]:
            why += f"; above the target: its runs' mean final val_loss {e.mean_loss:.5f} > {TARGET_LOSS[3]}"
    return why


# --- writing ---------------------------------------------------------------------------------------------

TRAIN_SHARDS = {1: 9, 2: 40}  # 1: the upstream README's download command; 2: 7500 steps x 8 x 64K tokens, rounded up
HEADER = "# Generated by benchmarks/ladder_build.py from modded-nanogpt {commit}; do not edit by hand.\n"


def runtime_name(torch: str) -> str:
    return "torch-" + torch  # the CUDA variant too: torch 2.10.0 was printed as +cu126 and +cu128


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def script_table(prefix: str, run: Run) -> list[str]:
    """The TOML tables pinning a record's script and its companion files, cut from `run`'s log."""
    def pin(section: str) -> list[str]:
        return [f"url = {_q(RAW + run.path)}", f"bytes = {run.size}", f"log_sha256 = {_q(run.sha256)}",
                f"cut = {_q(section)}", f"sha256 = {_q(run.cuts[section])}"]
    out = [f"[{prefix}.script]", *pin(MAIN)]
    for name in sorted(n for n in run.cuts if n != MAIN):
        out += ["", f"[{prefix}.script.files.{_q(name)}]", *pin(name)]
    return out


def manifest_text(pair: Pair, spread: tuple[float, int, str]) -> str:
    s, t = pair.start, pair.target
    lines = [HEADER.format(commit=COMMIT).rstrip(),
             f"# Track {pair.track}: record {s.no} -> record {t.no}. One-sided Welch p = {pair.p:.3g} on the two "
             "records' logs" + (f" (a side with < 3 runs takes the track's pooled CV {spread[0] * 100:.3f}%, "
                                f"{spread[2]})" if pair.pooled_used else "") + ".",
             f"# t_i: {s.n} run(s) of {s.folder}/{s.group}, sd {fmt_sd(s)}; t_(i+1): {t.n} run(s) of "
             f"{t.folder}/{t.group}, sd {fmt_sd(t)} (judging/metrics.py over the logs; reference/ladder_times.toml).",
             f"# torch the logs printed: start {s.source.torch}, target {t.source.torch}." if s.source and t.source
             else ""]
    for r, p in pair.skipped:
        lines.append(f"# bridged: record {r.no} ({r.folder}) is not significantly faster than record {s.no} "
                     f"(p = {p:.3g}).")
    for r in (s, t):
        if r.note:
            lines.append(f"# record {r.no}: {r.note}.")
    lines += [f"id = {_q(pair.id)}", 'suite = "ladder"', f"track = {pair.track}",
              f"title = {_q(f'Track {pair.track}: record {s.no} -> {t.no}')}",
              f"target_val_loss = {TARGET_LOSS[pair.track]}", ""]
    for key, r in (("start", s), ("target", t)):
        assert r.source is not None
        lines += [f"[{key}]", f"record = {r.no}", f"train_time_ms = {round(r.mean, 1)}",
                  f"steps = {r.source.steps}", ""]
        lines += script_table(key, r.source) + [""]
    assert t.source is not None
    lines += ["[launch]", "nproc_per_node = 8", "timeout_s = 3600",
              'env = { NANOGPT_VAL_TOKENS = "10485760", PYTORCH_CUDA_ALLOC_CONF = "expandable_segments:True" }',
              "# one-GPU runs are not claimed: no GPU has measured which ladder records fit one",
              "supported_gpu_counts = [8]", f"runtime = {_q(runtime_name(t.source.torch or 'unknown'))}", "",
              "[data]", 'dataset = "fineweb"', f"train_shards = {TRAIN_SHARDS[pair.track]}", "",
              "[reference]", 'source = "manifest"', "", "[hints]", f'2 = "hints/{pair.id}/description.md"', ""]
    return "\n".join(line for i, line in enumerate(lines) if line or i > 4)


def steps_manifest_text(pair: StepsPair) -> str:
    """A track-3 task: scored by steps (metric = "steps"); both ends' steps and scripts from their linked logs."""
    s, t = pair.start, pair.target
    lines = [HEADER.format(commit=COMMIT).rstrip(),
             f"# Track 3 (optimization): README result {s.no} -> {t.no}, scored by steps (the fraction of the step "
             "reduction recovered).",
             f"# steps: every run of each linked log ends at step:N/N (start: {s.n_text}, target: {t.n_text}; "
             "judging/metrics.py over the logs); train_time_ms: their mean, for orientation only.",
             f"# torch the logs printed: start {s.source.torch}, target {t.source.torch}.",
             f"id = {_q(pair.id)}", 'suite = "ladder"', "track = 3", 'metric = "steps"',
             f"title = {_q(f'Track 3: result {s.no} -> {t.no} ({s.steps} -> {t.steps} steps)')}",
             f"target_val_loss = {TARGET_LOSS[3]}", ""]
    for key, e in (("start", s), ("target", t)):
        lines += [f"[{key}]", f"record = {e.no}", f"train_time_ms = {round(e.mean_ms, 1)}", f"steps = {e.steps}", ""]
        lines += script_table(key, e.source) + [""]
    shards = math.ceil(s.steps / (SHARD_TOKENS // T3_BATCH_TOKENS))  # the loader skips each shard's tail
    lines += ["[launch]", "nproc_per_node = 8", "timeout_s = 3600",
              'env = { NANOGPT_VAL_TOKENS = "10485760", PYTORCH_CUDA_ALLOC_CONF = "expandable_segments:True" }',
              "# one-GPU runs are not claimed: no GPU has measured which ladder records fit one",
              "supported_gpu_counts = [8]", f"runtime = {_q(runtime_name(t.source.torch or 'unknown'))}", "",
              "[data]", 'dataset = "fineweb"',
              f"train_shards = {shards}  # {s.steps} steps x {T3_BATCH_TOKENS} tokens, whole batches per shard", "",
              "[reference]", 'source = "manifest"', ""]
    return "\n".join(lines)


def fmt_sd(r: Row) -> str:
    return f"{r.sd:.1f} ms" if r.sd is not None else "none (one run)"


def hint_text(pair: Pair, rows: list[Row]) -> str:
    nos = sorted({r.no for r in rows if pair.start.no < r.no <= pair.target.no})
    lines = [f"# From record {pair.start.no} to record {pair.target.no} (track {pair.track})", "",
             "What the records in between changed, in our words:", ""]
    for no in nos:
        text = HINTS.get((pair.track, no))
        if text is None:
            raise SystemExit(f"benchmarks/ladder_hints.py: no hint for track {pair.track} row {no}; write one")
        lines.append(f"- record {no}: {text}")
    return "\n".join(lines) + "\n"


NEEDS = {
    "flash_attn_interface": "FlashAttention 3 (`flash_attn_interface`, built for Hopper; not on PyPI)",
    "kernels": "the `kernels` package, which fetches a FlashAttention 3 kernel from the Hugging Face hub on first "
               "use (network, or a filled HF cache with HF_HUB_OFFLINE=1)",
    "evals": "`evals/hellaswag.py` of the upstream repository, imported only when the script's HellaSwag "
             "evaluation is switched on",
}


def runtime_text(runs: list[Run], tasks: list[str]) -> str:
    run = runs[0]
    torch = run.torch or "unknown"
    version, _, local = torch.partition("+")
    cuda = {"cu126": "12.6", "cu128": "12.8", "cu129": "12.9", "cu130": "13.0", "cu124": "12.4"}.get(local)
    python = run.python or "3.12"
    container = "nv" in local or "a0" in version
    nightly = ".dev" in version or container
    needs = sorted({n for r in runs for n in r.needs})
    lines = [HEADER.format(commit=COMMIT).rstrip(),
             f"# The torch the ladder records' logs printed: {torch} (Python {python}); the runtime of "
             f"{', '.join(tasks)} (each task names its target record's torch)."]
    if container:
        lines.append("# An NVIDIA PyTorch container build (NGC 25.04), not a PyPI or nightly wheel: supply it as a "
                     "wheel, or map an interpreter that has it (--speedrun-runtime).")
    elif nightly:
        lines.append("# A nightly: nightlies expire from the PyTorch index, so its wheel is a file the user supplies.")
    lines += [f"# The records also import: {NEEDS[n]}." for n in needs]
    lines += ["# Nothing of this runtime was built or run here (no GPU); uv builds it: pytest-speedrun runtime build "
              "NAME --suite ladder.",
              f"description = {_q(f'torch {torch}, as the logs of the ladder records printed')}",
              f'python = "{python}"', f'torch = "{version}"']
    reqs = ["numpy"] + (["kernels"] if "kernels" in needs else [])
    if nightly:
        lines += [f"requirements = [{', '.join(_q(r) for r in reqs)}]", "user_wheel = true"]
    else:
        lines += [f"requirements = [{', '.join(_q(r) for r in [f'torch=={version}', *reqs])}]"]
        if cuda:
            lines.append(f'index = "https://download.pytorch.org/whl/{local}"')
    if cuda:
        lines.append(f'cuda = "{cuda}"')
    return "\n".join(lines) + "\n"


def refs_text(pairs: dict[int, list[Pair]], facts_path: Path, pairs3: list[StepsPair]) -> str:
    """The numbers of ladder_facts.toml the CI check needs (tests/test_ladder_refs.py), copied, not recomputed."""
    records = tomllib.loads(facts_path.read_text(encoding="utf-8"))["record"]
    facts = {(r["track"], r["dir"]): r for r in records}
    lines = [HEADER.format(commit=COMMIT).rstrip(),
             "# Figures copied from shared/reference/ladder_facts.toml (extracted independently of our log parser):",
             "# per record of the ladder, every run's train_time_ms (or, where the task uses one group of the folder,",
             "# that group's mean and run count). truncated_ms: runs the facts list but that stopped before their",
             "# final step (our parser refuses them, rightly). Numbers only.", ""]
    for row in used_rows(pairs):
        f = facts[(row.track, row.folder)]
        lines += ["[[record]]", f"track = {row.track}", f"row = {row.no}", f"dir = {_q(row.folder or '')}"]
        if (row.track, row.no) in GROUP_OVERRIDES:
            g = next(g for g in f["group"] if g["name"] == row.group)
            lines += [f"group = {_q(row.group)}", f"group_mean_ms = {g['train_time_ms_mean']}", f"runs = {g['runs']}"]
        else:
            ours = {r.train_time_ms for r in row.runs}
            truncated = [x for x in f["train_time_ms"] if x not in ours]
            lines += [f"train_time_ms = [{', '.join(str(x) for x in f['train_time_ms'])}]"]
            if truncated and f.get("incomplete_runs"):
                lines.append(f"truncated_ms = [{', '.join(str(x) for x in truncated)}]")
        lines.append("")
    return "\n".join(lines + track3_refs(pairs3, records))


def track3_refs(pairs: list[StepsPair], records: list[dict]) -> list[str]:
    """Per track-3 row of a task, the facts' figures for its README-linked log: the runs' final step, their count."""
    by_no = {e["no"]: (r, e) for r in records if r["track"] == 3 for e in r.get("readme", [])}
    lines = ["# track 3 (scored by steps): per row of a task, the README-linked log's final step and its runs.", ""]
    for no in sorted({e.no for p in pairs for e in (p.start, p.target)}):
        if no not in by_no:
            raise SystemExit(f"--facts: no track-3 record lists README row {no}; regenerate the facts file")
        r, e = by_no[no]
        lines += ["[[record]]", "track = 3", f"row = {no}", f"dir = {_q(r['dir'])}", f"log = {_q(e['log'])}",
                  f"steps = {e['log_steps']}", f"runs = {e['log_runs_in_file']}", ""]
    return lines


def used_rows(pairs: dict[int, list[Pair]]) -> list[Row]:
    seen: dict[tuple[int, int], Row] = {}
    for chain in pairs.values():
        for p in chain:
            seen.setdefault((p.track, p.start.no), p.start)
            seen.setdefault((p.track, p.target.no), p.target)
    return [seen[k] for k in sorted(seen)]


def times_text(pairs: dict[int, list[Pair]], spread: dict[int, tuple[float, int, str]]) -> str:
    lines = [HEADER.format(commit=COMMIT).rstrip(),
             "# Reference times t_i of the ladder: our parser (judging/metrics.py) over each record's comparable logs.",
             ""]
    for track, (cv, df, how) in spread.items():
        lines += ["[[pooled]]", f"track = {track}", f"cv = {cv:.6f}", f"df = {df}", f"source = {_q(how)}", ""]
    for row in used_rows(pairs):
        assert row.source is not None
        lines += ["[[record]]", f"track = {row.track}", f"row = {row.no}", f"dir = {_q(row.folder or '')}",
                  f"group = {_q(row.group)}", f"runs = {row.n}", f"mean_ms = {round(row.mean, 1)}",
                  f"sd_ms = {round(row.sd, 1) if row.sd is not None else 'nan'}",
                  f"train_time_ms = [{', '.join(str(r.train_time_ms) for r in row.runs)}]",
                  f"script_log = {_q(row.source.path)}", ""]
    return "\n".join(lines)


def excluded_text(rows: dict[int, list[Row]], pairs: dict[int, list[Pair]], spread, folders, track3) -> str:
    n1, n2, n3 = len(pairs[1]), len(pairs[2]), len(track3[1])
    lines = ["# The ladder suite: which records are tasks, and why the others are not", "",
             f"Generated by `benchmarks/ladder_build.py` from modded-nanogpt `{COMMIT}`: {n1} track-1 tasks (from "
             f"record {FIRST_ROW[1]} on), {n2} track-2 tasks and {n3} track-3 tasks (scored by steps, below). A "
             "time task pairs record *i* with the next README row whose comparable logs are significantly faster "
             "(one-sided Welch test, p < 0.01).", ""]
    for track, (cv, df, how) in spread.items():
        lines.append(f"- Track {track}: a side with fewer than 3 runs takes the pooled run-to-run CV "
                     f"{cv * 100:.3f}% ({df} degrees of freedom) of {how}.")
    lines += ["", "## Tasks", "", "| task | start | target | p | bridged |", "| - | - | - | - | - |"]
    for chain in pairs.values():
        for p in chain:
            lines.append(f"| {p.id} | {p.start.no} ({p.start.mean / 1000:.2f} s, n={p.start.n}) | {p.target.no} "
                         f"({p.target.mean / 1000:.2f} s, n={p.target.n}) | {p.p:.2g}"
                         f"{' (pooled CV)' if p.pooled_used else ''} | {', '.join(str(r.no) for r, _ in p.skipped)} |")
    lines += ["", "## Every record folder", "", "| track | folder | status |", "| - | - | - |"]
    lines += [f"| {t} | {d} | {why} |" for t, d, why in folders]
    lines += ["", "## README rows without a folder", ""]
    for track, track_rows in rows.items():
        lines += [f"- track {track}, row {r.no}: {r.reason}" for r in track_rows if r.folder is None]
    notes = [r for t in rows.values() for r in t if r.note and not r.reason]
    if notes:
        lines += ["", "## Notes", ""] + [f"- track {r.track}, record {r.no}: {r.note}" for r in notes]
    return "\n".join(lines + track3_excluded(*track3)) + "\n"


def track3_excluded(entries: list[Entry], pairs: list[StepsPair], unlinked: list[tuple[str, str]]) -> list[str]:
    in_task: dict[int, list[str]] = {}
    for p in pairs:
        for e in (p.start, p.target):
            in_task.setdefault(e.no, []).append(p.id)
    lines = ["", "## Track 3: the optimization track, scored by steps", "",
             f"The rows of `{T3_DIR}/README.md`'s table \"{T3_TABLE[3:]}\", in README order. Steps come from "
             "each row's linked log: every run in it (a file holds up to 30, each starting again at `step:0/N`), "
             "its final validation line `step:N/N` (judging/metrics.py). A row is excluded when the README links no "
             "log, when its runs' mean final val_loss is above 3.28, when it stops early on purpose, when its "
             "runs disagree on N, when the README's step count differs from N, or when its log names no torch. "
             "*Stops early* is decided by the log alone: a run whose last validation line is `step:k/N` with "
             "k < N. A row whose README says it ends early but whose runs reach `step:N/N` is listed as "
             "disagreeing with its README (the README's prose is not read). A task pairs consecutive remaining "
             "rows whose step count falls (next < this); a remaining row next to no fall is in no task.", "",
             "| task | start | target |", "| - | - | - |"]
    lines += [f"| {p.id} | {p.start.no} ({p.start.steps} steps, n={len(p.start.runs)}) | {p.target.no} "
              f"({p.target.steps} steps, n={len(p.target.runs)}) |" for p in pairs]
    lines += ["", "| track | row | README steps | log steps | status |", "| - | - | - | - | - |"]
    for e in entries:
        if e.reasons:
            status = "excluded: " + "; ".join(e.reasons)
        elif e.no in in_task:
            status = "used: " + ", ".join(in_task[e.no])
        else:
            status = "in no task: the step count does not fall from the previous remaining row nor to the next one"
        log_steps = ", ".join([*map(str, sorted({r.steps for r in e.runs})),
                               *(f"{k} of {n} (stopped)" for k, n in sorted(set(e.stopped)))]) or "none"
        lines.append(f"| 3 | {e.no} | {e.readme_steps} | {log_steps} | {status} |")
    lines += ["", "### Track 3 results the README's table does not link", ""]
    lines += [f"- track 3, results/{name}: {why}" for name, why in unlinked]
    return lines


def outputs(root: Path, facts: Path) -> dict[Path, str]:
    rows, pairs, spread, folders = build(root)
    track3 = build_track3(root)
    out: dict[Path, str] = {}
    runtimes: dict[str, list[tuple[Run, str]]] = {}
    for track, chain in pairs.items():
        for p in chain:
            out[SUITE / f"{p.id}.toml"] = manifest_text(p, spread[track])
            out[SUITE / "hints" / p.id / "description.md"] = hint_text(p, rows[track])
            assert p.target.source is not None
            runtimes.setdefault(runtime_name(p.target.source.torch or "unknown"), []).append((p.target.source, p.id))
    for sp in track3[1]:  # no hints: ladder_hints.py has none for track 3
        out[SUITE / f"{sp.id}.toml"] = steps_manifest_text(sp)
        runtimes.setdefault(runtime_name(sp.target.source.torch or "unknown"), []).append((sp.target.source, sp.id))
    for name, uses in runtimes.items():
        out[SUITE / "runtimes" / f"{name}.toml"] = runtime_text([r for r, _ in uses], [t for _, t in uses])
    out[SUITE / "reference" / "ladder_times.toml"] = times_text(pairs, spread)
    out[SUITE / "reference" / "ladder_refs.toml"] = refs_text(pairs, facts, track3[1])
    out[SUITE / "EXCLUDED.md"] = excluded_text(rows, pairs, spread, folders, track3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="root", required=True, type=Path, help="folder with the snapshot's README.md and "
                    "records/")
    ap.add_argument("--facts", type=Path, default=ROOT.parent / "shared" / "reference" / "ladder_facts.toml")
    ap.add_argument("--check", action="store_true", help="write nothing; fail when a committed file differs")
    args = ap.parse_args()
    files = outputs(args.root, args.facts)
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    extra = [p for p in SUITE.rglob("*") if p.is_file() and p not in files]  # the whole folder is generated
    if args.check:
        for p in stale + extra:
            print(f"differs: {p.relative_to(ROOT)}")
        return 1 if stale or extra else 0
    for p in extra:
        p.unlink()
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(files[p], encoding="utf-8")
    n = sum(1 for p in files if p.suffix == ".toml" and p.parent == SUITE)
    print(f"{n} task manifests; wrote {len(stale)} of {len(files)} files under {SUITE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
