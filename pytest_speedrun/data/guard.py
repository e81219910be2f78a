"""Data shards must be the same after a run as before it: size, mtime and content.

Small shards (≤ 64 MiB, e.g. the whole tiny corpus) are hashed in full. Big shards (a FineWeb shard is about
200 MB, a run reads up to 103 of them) get a hash of the header plus 16 evenly spaced 64 KiB blocks, which
any in-place rewrite of training or validation tokens of meaningful size changes, and the size and mtime
catch the rest of the cheap edits. The reference digests are taken when the guard is created, which the
harness does before the agent runs; the tiny corpus additionally checks against the digests recorded when it
was generated. Within a process, that snapshot reuses the digest of a shard unchanged since it was last read
(same path, device, inode, size, mtime and ctime); the check after a run always reads the content.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

FULL_HASH_LIMIT = 64 * 1024 * 1024
_BLOCK = 64 * 1024
_BLOCKS = 16
DIGESTS_FILE = "SHA256SUMS.json"


@dataclass(frozen=True)
class ShardState:
    size: int
    mtime_ns: int
    digest: str
    sampled: bool


def shard_state(path: Path) -> ShardState:
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if st.st_size <= FULL_HASH_LIMIT:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
            sampled = False
        else:
            block = min(_BLOCK, st.st_size)
            step = (st.st_size - block) // (_BLOCKS - 1)
            for i in range(_BLOCKS):
                f.seek(i * step)
                h.update(f.read(block))
            sampled = True
    return ShardState(size=st.st_size, mtime_ns=st.st_mtime_ns, digest=h.hexdigest(), sampled=sampled)


# Digests of shards this process has read, by what the file system says of them: path, device, inode, size,
# mtime and ctime. Only the snapshot taken *before* a run reuses one (DataGuard.__init__): the check after the run
# always reads the content again (and refreshes the entry), so a change is caught whatever its timestamps say,
# and a cached digest only saves re-reading unchanged shards between items. ctime is in the key because no
# process can set it back: a rewrite with its mtime restored (os.utime) still misses the cache.
_SEEN: dict[tuple[str, int, int, int, int, int], ShardState] = {}
_SEEN_MAX = 4096


def _seen_key(path: Path, st: os.stat_result) -> tuple[str, int, int, int, int, int]:
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def remembered_state(path: Path) -> ShardState:
    """`shard_state(path)`, from this process's last reading of the same unchanged file when there is one."""
    state = _SEEN.get(_seen_key(path, path.stat()))
    return state if state is not None else read_state(path)


def read_state(path: Path) -> ShardState:
    """`shard_state(path)`, read now, and kept for a later snapshot when the file did not change while it was read."""
    before = _seen_key(path, path.stat())
    state = shard_state(path)
    try:
        after = _seen_key(path, path.stat())
    except OSError:
        return state
    if before == after:
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[after] = state
    return state


def full_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_digests(root: Path) -> None:
    """Write the full sha256 of every shard of a freshly generated dataset next to it."""
    digests = {p.name: full_sha256(p) for p in sorted(root.glob("*.bin"))}
    (root / DIGESTS_FILE).write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")


class DataGuard:
    """Snapshot of a dataset's shards; `changes()` lists what differs now, one readable reason per shard."""

    def __init__(self, root: Path, patterns: tuple[str, ...] = ("*.bin",)) -> None:
        self.root = root
        self.paths = sorted({p for pat in patterns for p in root.glob(pat)})
        self.before = {p: remembered_state(p) for p in self.paths}
        self.recorded: dict[str, str] = {}
        try:
            self.recorded = json.loads((root / DIGESTS_FILE).read_text())
        except (OSError, ValueError):
            pass

    def changes(self) -> list[str]:
        reasons = []
        for path, before in self.before.items():
            if not path.exists():
                reasons.append(f"data shard {path.name} was deleted during the run")
                continue
            now = read_state(path)  # always read afresh (and kept for the next snapshot)
            if now.size != before.size:
                reasons.append(f"data shard {path.name} changed size during the run "
                               f"({before.size} -> {now.size} bytes)")
            elif now.digest != before.digest:
                reasons.append(f"data shard {path.name} was modified during the run (content hash changed)")
            elif now.mtime_ns != before.mtime_ns:
                reasons.append(f"data shard {path.name} was rewritten during the run (mtime changed)")
        current = set(self.root.glob("*.bin"))
        for extra in sorted(current - set(self.paths)):
            reasons.append(f"data shard {extra.name} was added to the data directory during the run")
        for name, digest in sorted(self.recorded.items()):
            path = self.root / name
            state = self.before.get(path)
            if state is not None and not state.sampled and state.digest != digest:
                reasons.append(f"data shard {name} differs from the digest recorded when it was created")
        return reasons


def make_read_only(root: Path) -> None:
    """Drop write permission on shards (no effect for root, which is why the guard verifies content too)."""
    for p in root.glob("*.bin"):
        try:
            os.chmod(p, 0o444)
        except OSError:
            pass
