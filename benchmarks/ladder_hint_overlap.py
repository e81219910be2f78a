"""Check that no ladder hint shares a run of 8 or more words with its upstream source.

    python benchmarks/ladder_hint_overlap.py --from /tmp/mn [--run 8]

Per hint of benchmarks/ladder_hints.py (track, README row): the source is the row's README description (link
targets dropped) plus the record folder's own notes (every .md file in it, where it has a folder). Words are
lower-cased runs of letters and digits. Prints the longest shared run per hint's worst case and exits 1 when any
hint shares `--run` words or more. Prints no upstream text.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ladder_build import TRACK_DIR, readme_rows  # noqa: E402
from ladder_hints import HINTS  # noqa: E402

_WORD = re.compile(r"[a-z0-9]+")
_LINK = re.compile(r"\]\([^)]*\)")


def words(text: str) -> list[str]:
    return _WORD.findall(_LINK.sub("]", text).lower())


def longest_shared(a: list[str], b: list[str]) -> int:
    """The longest run of consecutive words common to a and b (dynamic programming over the two lists)."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="root", required=True, type=Path)
    ap.add_argument("--run", type=int, default=8, help="the forbidden run length in words (default 8)")
    args = ap.parse_args()
    rows = readme_rows((args.root / "README.md").read_text(encoding="utf-8"))
    sources: dict[tuple[int, int], list[str]] = {}
    for track, track_rows in rows.items():
        for r in track_rows:
            text = r.desc
            if r.folder:
                folder = args.root / TRACK_DIR[track] / r.folder
                text += "\n" + "\n".join(p.read_text(encoding="utf-8", errors="replace")
                                         for p in sorted(folder.rglob("*.md")))
            sources.setdefault((track, r.no), []).extend(words(text))
    worst, failed, missing = 0, [], []
    for key, hint in sorted(HINTS.items()):
        if key not in sources:
            missing.append(key)
            continue
        n = longest_shared(words(hint), sources[key])
        worst = max(worst, n)
        if n >= args.run:
            failed.append((key, n))
    print(f"{len(HINTS) - len(missing)} hints checked against their README row and folder notes; longest shared "
          f"run: {worst} words; {len(failed)} at {args.run} or more")
    for (track, no), n in failed:
        print(f"FAIL track {track} row {no}: shares a run of {n} words with its source; rewrite it")
    for track, no in missing:
        print(f"FAIL track {track} row {no}: no such README row")
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
