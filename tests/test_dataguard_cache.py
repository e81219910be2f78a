"""The data guard's digest cache (issue 23): a snapshot before a run reuses this process's digests of unchanged
shards, the check after a run always reads the content, and an edit between items is still caught."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_speedrun.data import guard as dataguard
from pytest_speedrun.data.dataset import write_shard


@pytest.fixture
def reads(monkeypatch) -> list[Path]:
    """Every shard whose content the guard reads."""
    seen: list[Path] = []
    real = dataguard.shard_state

    def counting(path: Path) -> dataguard.ShardState:
        seen.append(path)
        return real(path)
    monkeypatch.setattr(dataguard, "shard_state", counting)
    monkeypatch.setattr(dataguard, "_SEEN", {})
    return seen


def _dataset(root: Path) -> Path:
    write_shard(root / "fineweb_val_000000.bin", list(range(1000)))
    write_shard(root / "fineweb_train_000001.bin", list(range(2000)))
    dataguard.record_digests(root)
    return root


def test_the_next_items_snapshot_reuses_the_digests_of_unchanged_shards(tmp_path: Path, reads: list[Path]) -> None:
    root = _dataset(tmp_path)
    first = dataguard.DataGuard(root)
    assert len(reads) == 2
    assert first.changes() == [] and len(reads) == 4  # the check after a run reads every shard again
    second = dataguard.DataGuard(root)
    assert len(reads) == 4 and second.before == first.before  # nothing read: the digests were remembered
    assert second.changes() == [] and len(reads) == 6


def test_an_edit_between_items_with_its_mtime_restored_misses_the_cache(tmp_path: Path, reads: list[Path]) -> None:
    root = _dataset(tmp_path)
    assert dataguard.DataGuard(root).changes() == []
    path = root / "fineweb_val_000000.bin"
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(2000)
        f.write(b"\x00\x00")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as before; ctime cannot be set back
    count = len(reads)
    guard = dataguard.DataGuard(root)
    assert path in reads[count:]  # read afresh for the snapshot
    assert guard.changes() == ["data shard fineweb_val_000000.bin differs from the digest recorded when it was created"]


def test_an_edit_during_the_run_is_caught_even_with_a_remembered_snapshot(tmp_path: Path, reads: list[Path]) -> None:
    root = _dataset(tmp_path)
    dataguard.DataGuard(root).changes()
    guard = dataguard.DataGuard(root)  # from the cache
    path = root / "fineweb_train_000001.bin"
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(3000)
        f.write(b"\x07\x07")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "data shard fineweb_train_000001.bin was modified during the run (content hash changed)" in guard.changes()
