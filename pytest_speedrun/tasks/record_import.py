"""Offline import of pinned record scripts: find them by content in any directory tree and copy them into the cache.

Air-gapped GPU nodes cannot download the pinned scripts, but a clone of the upstream repository, a copied
folder or a USB stick can carry them. `import_records` walks such a tree and imports every file whose sha256
matches a pin into `<cache>/records/<sha256>.py`, the same place `fetch records` downloads to, so
`resolve_task` finds them either way. File names and layout do not matter; only content does.

A script pinned as a cut of a training log (the ladder suite) is found by its log: the log's size and sha256 are
pinned, so the walk hashes only files of a log's size; a matching log has its sections cut (tasks/log_cut.py)
and each cut is checked against its own pinned sha256 before it is stored. A file of a pinned size whose sha256
matches no pin (a decoy with the right name and the wrong content) is refused and counted.

The tree may be big (a disk that also holds FineWeb, say), so only regular files whose size equals a pinned
size are hashed, and the walk stops as soon as every pin is present. Symlinks are followed, since copied
trees use them, and every directory is entered at most once by its (st_dev, st_ino), which also ends
symlink loops. Unreadable files and folders are skipped with a note, never fatal.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pytest_speedrun.data.guard import full_sha256
from pytest_speedrun.tasks.fetch import FetchError, cached_path, fetch_command, store_cut, with_companions
from pytest_speedrun.tasks.manifest import ScriptRef, Task

# A pin without a pinned size forces hashing every file up to this size (record scripts are tens of KB).
UNSIZED_MAX_BYTES = 4 << 20
FOUND, CACHED, MISSING = "found", "already cached", "missing"


@dataclass(frozen=True)
class Pin:
    """A distinct pinned script and the task ends that use it, e.g. ("task11 target", "task12 start")."""

    ref: ScriptRef
    record: int
    uses: tuple[str, ...]

    def describe(self) -> str:
        size = f", {self.ref.bytes} bytes" if self.ref.bytes is not None else ""
        return f"record {self.record} (sha256 {self.ref.sha256}{size}; {', '.join(self.uses)})"


def suite_pins(tasks: list[Task]) -> list[Pin]:
    """The distinct pinned downloads of `tasks`, in order of first use, with every reference to each."""
    refs: dict[str, tuple[ScriptRef, int]] = {}
    uses: dict[str, list[str]] = {}
    for task in tasks:
        for end, which in ((task.start, "start"), (task.target, "target")):
            for ref in with_companions(end.script):
                if ref.url is None or ref.sha256 is None:
                    continue
                refs.setdefault(ref.sha256, (ref, end.record))
                name = next((n for n, sub in end.script.files if sub is ref), None)
                uses.setdefault(ref.sha256, []).append(f"{task.id} {which}" + (f" {name}" if name else ""))
    return [Pin(ref, record, tuple(uses[sha])) for sha, (ref, record) in refs.items()]


def is_cached(ref: ScriptRef, cache_dir: Path) -> bool:
    """The pinned script is in the cache with exactly the pinned content."""
    path = cached_path(cache_dir, ref)
    try:
        return path.is_file() and full_sha256(path) == ref.sha256
    except OSError:
        return False


@dataclass
class WalkStats:
    """What the walk saw; `notes` are one-line reasons for everything it skipped."""

    dirs: int = 0
    files: int = 0
    hashed: int = 0
    revisited_dirs: int = 0  # symlinked folders already walked: loops, or two links to one folder
    decoys: list[Path] = field(default_factory=list)  # a pinned size, but a sha256 no pin has
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImportResult:
    pins: tuple[Pin, ...]
    imported: dict[str, Path]  # sha256 -> the file it was copied from
    cached: frozenset[str]
    stats: WalkStats
    stopped_early: bool

    def status(self, sha: str) -> str:
        return FOUND if sha in self.imported else CACHED if sha in self.cached else MISSING


def _walk(root: Path, wanted: Callable[[int], bool], visit: Callable[[Path], bool], stats: WalkStats) -> bool:
    """Depth-first walk of `root` following symlinks, each directory once; `visit(path)` is called for regular
    files of a wanted size and returns True to stop the walk. Returns whether it stopped early."""
    top = os.stat(root)
    seen_dirs = {(top.st_dev, top.st_ino)}
    seen_files: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            stats.notes.append(f"{folder}: cannot list it ({exc.strerror}); skipped")
            continue
        stats.dirs += 1
        subdirs = []
        for entry in entries:
            try:
                st = entry.stat()  # follows symlinks
            except OSError as exc:
                kind = "symlink" if entry.is_symlink() else "entry"
                stats.notes.append(f"{entry.path}: {kind} cannot be followed ({exc.strerror}); skipped")
                continue
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen_dirs:
                    stats.revisited_dirs += 1
                    continue
                seen_dirs.add((st.st_dev, st.st_ino))
                subdirs.append(Path(entry.path))
            elif stat.S_ISREG(st.st_mode):  # never FIFOs or devices: opening those can block
                stats.files += 1
                if wanted(st.st_size) and (st.st_dev, st.st_ino) not in seen_files:
                    seen_files.add((st.st_dev, st.st_ino))
                    if visit(Path(entry.path)):
                        return True
        stack.extend(reversed(subdirs))  # popped in name order
    return False


def _copy_verified(source: Path, ref: ScriptRef, cache_dir: Path) -> None:
    """Copy `source` into the cache through a `.part` file, verifying the copy itself (the source could change
    between hashing and copying)."""
    final = cached_path(cache_dir, ref)
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_suffix(".import.part")
    shutil.copyfile(source, part)
    if full_sha256(part) != ref.sha256:
        part.unlink(missing_ok=True)
        raise OSError(f"{source} changed while it was being imported")
    os.replace(part, final)


def import_records(root: Path, pins: list[Pin], cache_dir: Path) -> ImportResult:
    """Import every pinned script found under `root` into the cache; scripts already cached are kept."""
    if not root.is_dir():
        raise FetchError(f"--from {root}: not a directory; give the folder that holds the record scripts "
                         "(any layout, e.g. a clone of the pinned repository)")
    by_sha = {p.ref.sha256: p for p in pins}
    by_log: dict[str, list[Pin]] = {}
    for p in pins:
        if p.ref.log_sha256 is not None:
            by_log.setdefault(p.ref.log_sha256, []).append(p)
    cached = frozenset(sha for sha, p in by_sha.items() if is_cached(p.ref, cache_dir))
    imported: dict[str, Path] = {}
    stats = WalkStats()
    sizes = {p.ref.bytes for p in pins if p.ref.bytes is not None}
    unsized = any(p.ref.bytes is None for p in pins)
    if unsized:
        stats.notes.append(f"{sum(p.ref.bytes is None for p in pins)} pin(s) have no pinned size, so every file up "
                           f"to {UNSIZED_MAX_BYTES >> 20} MiB is hashed; add bytes = N to their manifests")

    def wanted(size: int) -> bool:
        return size in sizes or (unsized and size <= UNSIZED_MAX_BYTES)

    def visit(path: Path) -> bool:
        try:
            digest = full_sha256(path)
        except OSError as exc:
            stats.notes.append(f"{path}: unreadable ({exc.strerror}); skipped")
            return False
        stats.hashed += 1
        if digest in by_log:
            for cut_pin in by_log[digest]:
                sha = cut_pin.ref.sha256 or ""
                if sha in cached or sha in imported:
                    continue
                try:
                    store_cut(path, cut_pin.ref, cache_dir)
                except (FetchError, OSError) as exc:
                    stats.notes.append(f"{path}: matches the log of {cut_pin.describe()} but: {exc}; skipped")
                    continue
                imported[sha] = path
            return len(cached) + len(imported) == len(by_sha)
        pin = by_sha.get(digest)
        if pin is None or pin.ref.cut is not None:  # a cut script is only ever taken from its pinned log
            stats.decoys.append(path)
        elif digest not in cached and digest not in imported:
            try:
                _copy_verified(path, pin.ref, cache_dir)
            except OSError as exc:
                stats.notes.append(f"{path}: matches {pin.describe()} but could not be copied ({exc}); skipped")
                return False
            imported[digest] = path
        return len(cached) + len(imported) == len(by_sha)

    stopped = len(cached) == len(by_sha) or _walk(root, wanted, visit, stats)
    return ImportResult(tuple(pins), imported, cached, stats, stopped_early=stopped)


def report_lines(tasks: list[Task], result: ImportResult) -> list[str]:
    """Per task: the status of its start and target script; then the totals of `tasks`' pins."""
    lines = []
    width = max((len(t.id) for t in tasks), default=4)
    for task in tasks:
        cells = []
        for end, which in ((task.start, "start"), (task.target, "target")):
            refs = [r for r in with_companions(end.script) if r.sha256 is not None and r.url is not None]
            if not refs:
                cells.append(f"{which} record {end.record}: in the suite")
                continue
            states = [result.status(r.sha256 or "") for r in refs]
            worst = MISSING if MISSING in states else FOUND if FOUND in states else CACHED
            files = f" ({len(refs)} files)" if len(refs) > 1 else ""
            cells.append(f"{which} record {end.record}: {worst}{files}")
        lines.append(f"{task.id:<{width}}  {cells[0]:<32}  {cells[1]}")
    pins = suite_pins(tasks)
    counts = {s: sum(result.status(p.ref.sha256 or "") == s for p in pins) for s in (FOUND, CACHED, MISSING)}
    lines.append(f"{sum(len(p.uses) for p in pins)} pinned reference(s), {len(pins)} distinct file(s): "
                 f"{counts[FOUND]} found, {counts[CACHED]} already cached, {counts[MISSING]} missing")
    return lines


def walk_lines(result: ImportResult) -> list[str]:
    """What the walk did, and a note for everything it skipped."""
    s = result.stats
    lines = [f"walked {s.dirs} folder(s), {s.files} file(s); hashed {s.hashed} of a pinned size; "
             f"refused {len(s.decoys)} of a pinned size whose sha256 matches no pin; "
             f"skipped {s.revisited_dirs} symlinked folder(s) already walked"
             + ("; stopped once every pin was present" if result.stopped_early else "")]
    lines += [f"note: {n}" for n in s.notes]
    return lines


def require_complete(suite: str, tasks: list[Task], root: Path, result: ImportResult) -> None:
    """FetchError naming every missing script of `tasks` when the suite is incomplete."""
    missing = [p for p in suite_pins(tasks) if result.status(p.ref.sha256 or "") == MISSING]
    if missing:
        raise FetchError(f"suite {suite} is incomplete: {len(missing)} pinned script(s) not found under {root}: "
                         + "; ".join(p.describe() for p in missing)
                         + f". Put them anywhere under {root}, or run `{fetch_command(suite)}` where there is network")
