"""Which pinned record scripts the compat fixes apply to, and what they change there: counts only, never text.

    python benchmarks/compat_scan.py --from DIR [--suite nanogpt]

DIR is any folder that holds the suite's pinned record scripts (a clone of the pinned repository, say); they are
found by sha256 as `pytest-speedrun fetch records --from` finds them, into a temporary cache. Per record of the
suite: the fixes whose construct it holds, the lines each changes, whether every changed line lies inside a
registered fake, whether the result parses, and whether applying it again changes nothing. The records are
CC-BY-NC: this prints no line of them.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import sys
import tempfile
from pathlib import Path

from pytest_speedrun.tasks.compat import FIXES, fake_spans, fixes_for
from pytest_speedrun.tasks.fetch import cached_path
from pytest_speedrun.tasks.manifest import find_suite, load_suite
from pytest_speedrun.tasks.record_import import MISSING, import_records, suite_pins


def changed_lines(before: str, after: str) -> list[int]:
    """Line numbers (1-based, in `before`) that the change replaced or deleted, and insertion points."""
    lines = []
    matcher = difflib.SequenceMatcher(a=before.splitlines(), b=after.splitlines(), autojunk=False)
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        if tag != "equal":
            lines += list(range(i1 + 1, i2 + 1)) or [i1 + 1]
    return lines


def scan_one(source: str) -> str:
    fixes = fixes_for(source)
    if not fixes:
        return "no construct"
    cells = []
    for fix in fixes:
        fixed = fix.apply(source)
        changed = changed_lines(source, fixed)
        spans = fake_spans(source)
        inside = all(any(first <= line <= last for _, first, last in spans) for line in changed)
        try:
            ast.parse(fixed)
            parses = "parses"
        except SyntaxError:
            parses = "DOES NOT PARSE"
        again = "idempotent" if fix.apply(fixed) == fixed else "NOT IDEMPOTENT"
        where = "all inside registered fakes" if inside else "SOME OUTSIDE THE FAKES"
        cells.append(f"{fix.name}: {len(changed)} line(s) changed, {where}, {parses}, {again}")
    return "; ".join(cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="root", type=Path, required=True, help="folder holding the record scripts")
    parser.add_argument("--suite", default="nanogpt")
    args = parser.parse_args(argv)
    tasks = load_suite(find_suite(args.suite))
    pins = suite_pins(tasks)
    records: dict[int, str] = {}
    for task in tasks:
        for end in (task.start, task.target):
            if end.script.sha256 is not None:
                records.setdefault(end.record, end.script.sha256)
    print(f"compat fixes: {', '.join(FIXES)}; suite {args.suite}: {len(records)} records, {len(pins)} distinct files")
    matched = []
    with tempfile.TemporaryDirectory(prefix="compat-scan-") as cache:
        result = import_records(args.root, pins, Path(cache))
        by_sha = {p.ref.sha256: p.ref for p in pins}
        for record, sha in sorted(records.items()):
            path = cached_path(Path(cache), by_sha[sha])
            if result.status(sha) == MISSING or not path.is_file():
                print(f"record {record:>2} (sha256 {sha[:12]}): not found under {args.root}")
                continue
            line = scan_one(path.read_text(encoding="utf-8"))
            if line != "no construct":
                matched.append(record)
            print(f"record {record:>2} (sha256 {sha[:12]}): {line}")
    print(f"matched: {', '.join(map(str, matched)) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
