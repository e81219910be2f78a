import os
from pathlib import Path

from pytest_speedrun.data import guard as dataguard
from pytest_speedrun.data.dataset import write_shard


def _dataset(tmp_path: Path) -> Path:
    write_shard(tmp_path / "fineweb_val_000000.bin", list(range(1000)))
    write_shard(tmp_path / "fineweb_train_000001.bin", list(range(2000)))
    return tmp_path


def test_untouched_data_has_no_changes(tmp_path: Path) -> None:
    guard = dataguard.DataGuard(_dataset(tmp_path))
    assert guard.changes() == []


def test_in_place_edit_with_restored_mtime_is_caught(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    guard = dataguard.DataGuard(root)
    path = root / "fineweb_val_000000.bin"
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(2000)
        f.write(b"\x00\x00")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert guard.changes() == ["data shard fineweb_val_000000.bin was modified during the run (content hash changed)"]


def test_truncation_deletion_and_additions_are_caught(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    guard = dataguard.DataGuard(root)
    with open(root / "fineweb_train_000001.bin", "r+b") as f:
        f.truncate(1024 + 100)
    (root / "fineweb_val_000000.bin").unlink()
    write_shard(root / "fineweb_train_000002.bin", [1, 2, 3])
    changes = guard.changes()
    assert any("deleted" in c for c in changes)
    assert any("changed size" in c for c in changes)
    assert any("fineweb_train_000002.bin was added" in c for c in changes)


def test_big_shards_are_hashed_by_sampled_blocks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(dataguard, "FULL_HASH_LIMIT", 1024)
    root = _dataset(tmp_path)
    state = dataguard.shard_state(root / "fineweb_train_000001.bin")
    assert state.sampled
    guard = dataguard.DataGuard(root)
    path = root / "fineweb_train_000001.bin"
    st = path.stat()
    with open(path, "r+b") as f:  # the first sampled block starts at offset 0
        f.write(b"\xff")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert any("modified" in c for c in guard.changes())


def test_recorded_digests_catch_edits_made_before_the_guard(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    dataguard.record_digests(root)
    with open(root / "fineweb_val_000000.bin", "r+b") as f:
        f.seek(1500)
        f.write(b"\x01")
    guard = dataguard.DataGuard(root)
    assert guard.changes() == ["data shard fineweb_val_000000.bin differs from the digest recorded when it was created"]


def test_tiny_dataset_regenerates_after_tampering(tmp_path: Path) -> None:
    from pytest_speedrun.data.dataset import ensure_tiny_dataset

    ds = ensure_tiny_dataset(tmp_path)
    val = ds.root / "fineweb_val_000000.bin"
    original = val.read_bytes()
    os.chmod(val, 0o644)
    val.write_bytes(original[:-2] + b"\x00\x00")
    ensure_tiny_dataset(tmp_path)
    assert val.read_bytes() == original
