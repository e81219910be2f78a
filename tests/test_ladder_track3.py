"""Track 3 of the ladder (the optimization track, scored by steps): the builder's rules on a generated stand-in of
the snapshot, the harness's clock on logs that print seconds, and (only where the snapshot is extracted at
/tmp/mn) every track-3 log's final line through our parser against the independently extracted facts.

The committed manifests, EXCLUDED.md and ladder_refs.toml are checked in tests/test_ladder_suite.py.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pytest_speedrun.files import tomllib
from pytest_speedrun.judging.metrics import parse_text
from pytest_speedrun.judging.timeline import derive

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = Path("/tmp/mn")  # benchmarks/ladder_build.py --from; never in CI
FACTS = ROOT.parent / "shared" / "reference" / "ladder_facts.toml"
SEP = "=" * 100
T3 = "records/track_3_optimization"


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    """benchmarks/ladder_build.py as a module (it puts its own folder on sys.path: undone here)."""
    saved = list(sys.path)
    spec = importlib.util.spec_from_file_location("ladder_build_under_test", ROOT / "benchmarks" / "ladder_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def run_text(steps: int, loss: float, stop: int | None = None) -> str:
    out = [f"step:0/{steps} val_loss:10.82584 train_time:0.000s step_avg:nanms"]
    last = stop or steps
    for s in sorted({*range(25, last, 25), last}):
        out.append(f"step:{s}/{steps} val_loss:{loss if s == steps else 4.0:.5f} train_time:{s * 0.15:.3f}s "
                   "step_avg:150.00ms")
    return "\n".join(out) + "\n"


def log_text(*runs: str, torch: bool = True) -> str:
    header = "Running PyTorch 2.10.0+cu128 compiled for CUDA 12.8 on NVIDIA H100 80GB HBM3 with world_size 8\n"
    return f"import torch\nprint('a record script')\n{SEP}\n{header if torch else ''}{SEP}\n" + "".join(runs)


def snapshot(tmp_path: Path, rows: list[tuple[int, str, str]], logs: dict[str, str]) -> Path:
    folder = tmp_path / T3
    (folder / "results").mkdir(parents=True)
    table = ["## Notable results history", "", "| # | Steps to 3.28 | Evidence | Description | Date | Log | Who |",
             "| - | - | - | - | - | - | - |"]
    table += [f"| {no} | {steps} | 3.2780 (n=1) | words | 2026/05/01 | [log]({link}) | someone |"
              for no, steps, link in rows]
    (folder / "README.md").write_text("# Track 3\n\n" + "\n".join(table) + "\n\n## Rules\n", encoding="utf-8")
    for name, text in logs.items():
        (folder / "results" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "results" / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_the_builder_pairs_falling_rows_and_gives_every_exclusion_its_reason(builder, tmp_path: Path) -> None:
    root = snapshot(tmp_path, [
        (1, "500(!)", "results/a.txt"), (2, "400", "results/b/README.md"), (3, "450", "results/c.txt"),
        (4, "300", "results/d.txt"), (5, "420", "results/e.txt"), (6, "400", "results/f.txt"),
        (7, "440", "results/g.txt"), (8, "430", "results/h.txt"), (9, "425", "results/i.txt"),
    ], {
        "a.txt": log_text(run_text(500, 3.279), run_text(500, 3.2771)),  # two runs in one file
        "b/README.md": "no log here\n",
        "c.txt": log_text(run_text(450, 3.2775)),
        "d.txt": log_text(run_text(325, 3.2778)),  # the README says 300
        "e.txt": log_text(run_text(420, 3.2790), run_text(420, 3.2830)),  # mean 3.2810
        "f.txt": log_text(run_text(450, 3.2770, stop=400)),  # ends at step:400/450
        "g.txt": log_text(run_text(440, 3.2760)),
        "h.txt": log_text(run_text(430, 3.2760), run_text(440, 3.2760)),
        "i.txt": log_text(run_text(425, 3.2760), torch=False),
        "unlinked.txt": log_text(run_text(425, 3.2760)),
    })
    entries, pairs, unlinked = builder.build_track3(root)
    reasons = {e.no: " ".join(e.reasons) for e in entries}
    assert [p.id for p in pairs] == ["t3_001_003", "t3_003_007"]
    assert [len(e.runs) for e in entries if e.no in (1, 3, 7)] == [2, 1, 1]
    assert reasons[1] == reasons[3] == reasons[7] == ""
    assert "no log: the README links README.md" in reasons[2]
    assert "README 300" in reasons[4] and "step:325/325" in reasons[4]
    assert "above the target" in reasons[5] and "3.28100" in reasons[5]
    assert "stops early on purpose" in reasons[6] and "step:400/450" in reasons[6]
    assert "disagree on the step count" in reasons[8]
    assert "no `Running PyTorch` line" in reasons[9]
    assert unlinked == [("unlinked.txt", "not in the README's table (no row links it)")]


def test_a_steps_manifest_pins_both_logs_and_names_the_steps(builder, tmp_path: Path) -> None:
    root = snapshot(tmp_path, [(1, "500", "results/a.txt"), (2, "450", "results/c.txt")],
                    {"a.txt": log_text(run_text(500, 3.279)), "c.txt": log_text(run_text(450, 3.2775))})
    _, pairs, _ = builder.build_track3(root)
    raw = tomllib.loads(builder.steps_manifest_text(pairs[0]))
    assert (raw["metric"], raw["track"], raw["start"]["steps"], raw["target"]["steps"]) == ("steps", 3, 500, 450)
    assert raw["start"]["script"]["cut"] == "script" and raw["target"]["script"]["url"].endswith(f"{T3}/results/c.txt")
    assert raw["start"]["train_time_ms"] == 75000.0 and "hints" not in raw


def test_the_harness_clock_reads_seconds_lines_as_seconds() -> None:
    # 0.15 s between steps and 0.15 s more train_time each: no step is unclocked (read as ms, every one would be)
    lines = [(10.0 + 0.15 * s, f"step:{s}/20 train_time:{0.15 * s:.3f}s step_avg:150.00ms") for s in range(1, 21)]
    timeline = derive(lines)
    assert timeline is not None and timeline.unclocked_steps == 0 and timeline.timed_steps == 20


# --- over the snapshot ------------------------------------------------------------------------------------------

FINAL = re.compile(r"^step:(\d+)/\1 val_loss:", re.MULTILINE)  # a final validation line, found without our parser


@pytest.mark.skipif(not (SNAPSHOT / T3).is_dir() or not FACTS.is_file(),
                    reason="needs the modded-nanogpt snapshot extracted at /tmp/mn and shared/reference/"
                           "ladder_facts.toml (neither is in CI)")
def test_every_track3_log_with_a_final_line_parses_to_the_facts_steps(builder) -> None:
    facts = [r for r in tomllib.loads(FACTS.read_text(encoding="utf-8"))["record"] if r["track"] == 3]
    parsed, bad = 0, []
    for record in facts:
        where = SNAPSHOT / T3 / record["dir"]
        files = [where] if where.is_file() else sorted(p for p in where.rglob("*") if p.suffix in (".txt", ".log"))
        planned = set(record["steps_planned"]) | set(record["steps"])
        planned |= {s for g in record.get("group", []) for s in g.get("steps", [])}
        linked = {e["log"]: e["log_steps"] for e in record.get("readme", []) if "log_steps" in e}
        for path in files:
            for run in builder.split_runs(path.read_text(encoding="utf-8", errors="replace")):
                final = FINAL.search(run)
                if final is None:
                    continue
                m = parse_text(run)
                parsed += 1
                expected = linked.get(str(path.relative_to(where)) if where.is_dir() else where.name)
                if m.steps != int(final[1]) or m.steps not in planned or expected not in (None, m.steps):
                    bad.append(f"{path}: parsed {m.steps}, facts {sorted(planned)} (linked: {expected})")
    assert bad == [] and parsed == 514  # every final line of the 405 .txt/.log files the facts list
