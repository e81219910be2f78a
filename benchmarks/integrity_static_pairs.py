"""The static integrity rules on the genuine start -> target pairs of a suite: does any genuine record trip them?

    python benchmarks/integrity_static_pairs.py [SUITE ...] [--records DIR]

For each task of each suite (default: tiny nanogpt) the target record is judged as a solution of the start
record, the way the harness judges an agent's script: the env contract (contract.py), the val path
(valpath.py), and the near-copy rule (nearcopy.py) for the *unchanged start script* against the target (the
target itself is trivially a copy of itself). Pinned upstream scripts are looked up in DIR by content (sha256),
so DIR may hold them under any names (the cache's `records/` folder, or an extract of the upstream repository);
a task whose scripts are not there is reported as missing.

Output is one row per task, with rule names and line numbers only (no script text: the upstream records are
CC-BY-NC), so it can be committed as benchmarks/integrity_static_pairs.last.txt.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from pytest_speedrun.judging.contract import contract_reasons
from pytest_speedrun.judging.nearcopy import near_copy_reasons
from pytest_speedrun.judging.valpath import val_path_changes, val_paths
from pytest_speedrun.tasks.manifest import ScriptRef, Task, find_suite, load_suite


def _by_content(directory: Path | None) -> dict[str, Path]:
    if directory is None or not directory.is_dir():
        return {}
    return {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in sorted(directory.rglob("*.py")) if p.is_file()}


def _script(ref: ScriptRef, found: dict[str, Path]) -> str | None:
    path = ref.path if ref.path is not None else found.get(ref.sha256 or "")
    return path.read_text(encoding="utf-8") if path is not None and path.is_file() else None


def _ranges(numbers: tuple[int, ...] | list[int]) -> str:
    """1,2,3,7 -> '1-3,7'."""
    out: list[str] = []
    for n in sorted(set(numbers)):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ",".join(out) or "-"


def _sites(source: str) -> str:
    paths = val_paths(source)
    return "; ".join(f"printed {p.line} via {_ranges([n for n in p.lines if n != p.line])}" for p in paths) or "none"


def row(task: Task, found: dict[str, Path]) -> tuple[str, bool]:
    start, target = _script(task.start.script, found), _script(task.target.script, found)
    pair = f"{task.start.record}->{task.target.record}"
    if start is None or target is None:
        return f"{task.suite:8} {task.id:7} {pair:6} missing (pinned script not in --records)", False
    contract = contract_reasons(start, target)
    copy = near_copy_reasons(start, target)
    changes = val_path_changes(start, target)
    flagged = bool(contract or copy or changes)
    val = "ok" if not changes else "FLAG " + " ".join(
        f"[target line {c.line}: changed {_ranges(c.changed)}, start lines without counterpart {_ranges(c.missing)}]"
        for c in changes)
    return (f"{task.suite:8} {task.id:7} {pair:6} contract {'FLAG' if contract else 'ok':4}  "
            f"near-copy(start) {'FLAG' if copy else 'ok':4}  val-path {val:4}  "
            f"start: {_sites(start)} | target: {_sites(target)}"), flagged


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suites", nargs="*", default=["tiny", "nanogpt"])
    ap.add_argument("--records", type=Path, default=None, help="directory holding the pinned upstream scripts")
    args = ap.parse_args()
    found = _by_content(args.records)
    total = flagged = missing = 0
    for suite in args.suites:
        for task in load_suite(find_suite(suite)):
            text, hit = row(task, found)
            print(text, flush=True)
            total += 1
            flagged += hit
            missing += text.endswith("not in --records)")
    print(f"{total} pair(s): {flagged} flagged, {missing} missing, {total - flagged - missing} pass every static rule")
    return 1 if flagged else 0


if __name__ == "__main__":
    raise SystemExit(main())
