"""`fetch records --from DIR`: pinned scripts found by content in a generated tree (decoys of the pinned size,
nested folders, symlinks and a symlink loop, unreadable files)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fakes import manifest
from pytest_speedrun import cli
from pytest_speedrun.tasks import record_import
from pytest_speedrun.tasks.fetch import cached_path, resolve_task
from pytest_speedrun.tasks.manifest import load_suite
from pytest_speedrun.tasks.record_import import import_records, suite_pins

AS_ROOT = os.geteuid() == 0
ROOT_SKIP = "root reads files and folders whatever their mode, so chmod 000 cannot make them unreadable"
COMMIT = "c" * 40
BODIES = {k: f"# record {k}\n".encode() + f"print({k})\n".encode() * (40 * k) for k in (1, 2, 3)}


def _url(k: int) -> str:
    return f"https://raw.githubusercontent.com/owner/repo/{COMMIT}/record_{k}/train_gpt2.py"


def _pin(k: int, with_size: bool = True) -> str:
    body = BODIES[k]
    size = f", bytes = {len(body)}" if with_size else ""
    return f'{{ url = "{_url(k)}", sha256 = "{hashlib.sha256(body).hexdigest()}"{size} }}'


def pinned_suite(root: Path, with_size: bool = True) -> Path:
    """Suite 'net': net01 = record 1 -> 2, net02 = record 2 -> 3 (4 references, 3 distinct files)."""
    suite = root / "net"
    suite.mkdir(parents=True)
    for i, (a, b) in enumerate(((1, 2), (2, 3)), start=1):
        text = manifest(f"net{i:02d}", "x.py", "y.py", reference="manifest", hints=False, records=(a, b))
        text = text.replace('{ path = "x.py" }', _pin(a, with_size)).replace('{ path = "y.py" }', _pin(b, with_size))
        (suite / f"net{i:02d}.toml").write_text(text)
    return suite


def decoy(k: int) -> bytes:
    """Same size as record k, different content."""
    body = bytearray(BODIES[k])
    body[2] ^= 1
    return bytes(body)


def generated_tree(root: Path) -> Path:
    """Record 1 deep in nested folders; record 2 only behind a symlinked folder; record 3 absent. Decoys of
    records 2 and 3 (pinned size, wrong hash) sort first; a symlink loop, a broken link and a big file."""
    tree = root / "usb"
    deep = tree / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    (deep / "something_else.txt").write_bytes(BODIES[1])
    (tree / "0_decoy_record_2.py").write_bytes(decoy(2))
    (tree / "a" / "0_decoy_record_3.py").write_bytes(decoy(3))
    (tree / "big.bin").write_bytes(b"\0" * (3 << 20))
    outside = root / "elsewhere" / "r2"
    outside.mkdir(parents=True)
    (outside / "train_gpt2.py").write_bytes(BODIES[2])
    (tree / "z_link").symlink_to(outside, target_is_directory=True)
    (tree / "a" / "b" / "loop").symlink_to(tree, target_is_directory=True)  # back to the top: a loop
    (tree / "dangling").symlink_to(root / "nowhere")
    (tree / "self_a").symlink_to(tree / "self_b")
    (tree / "self_b").symlink_to(tree / "self_a")  # a file-symlink loop: stat fails with ELOOP
    os.mkfifo(tree / "pipe")  # never opened: reading a FIFO would block
    return tree


def test_pins_are_counted_by_reference_and_by_distinct_file(tmp_path: Path) -> None:
    pins = suite_pins(load_suite(pinned_suite(tmp_path)))
    assert [p.record for p in pins] == [1, 2, 3]
    assert pins[1].uses == ("net01 target", "net02 start")


def test_import_finds_pins_by_content_and_refuses_decoys(tmp_path: Path) -> None:
    tasks = load_suite(pinned_suite(tmp_path))
    tree = generated_tree(tmp_path)
    cache = tmp_path / "cache"
    result = import_records(tree, suite_pins(tasks), cache)
    sha = {k: hashlib.sha256(b).hexdigest() for k, b in BODIES.items()}
    assert result.imported == {sha[1]: tree / "a" / "b" / "c" / "d" / "something_else.txt",
                               sha[2]: tree / "z_link" / "train_gpt2.py"}
    assert result.status(sha[3]) == record_import.MISSING
    assert cached_path(cache, tasks[0].start.script).read_bytes() == BODIES[1]
    assert sorted(p.name for p in result.stats.decoys) == ["0_decoy_record_2.py", "0_decoy_record_3.py"]
    assert not (cache / "records" / f"{hashlib.sha256(decoy(2)).hexdigest()}.py").exists()
    assert result.stats.hashed == 4  # the two records and the two decoys; never big.bin or the FIFO
    assert result.stats.revisited_dirs == 1  # the loop was entered once, not followed forever
    notes = "\n".join(result.stats.notes)
    assert "dangling: symlink cannot be followed" in notes and "self_a: symlink cannot be followed" in notes
    assert not list((cache / "records").glob("*.part"))


def test_only_files_of_a_pinned_size_are_hashed(tmp_path: Path, monkeypatch) -> None:
    tasks = load_suite(pinned_suite(tmp_path))
    tree = tmp_path / "big"
    tree.mkdir()
    for i in range(50):
        (tree / f"shard_{i}.bin").write_bytes(os.urandom(1000 + i))
    (tree / "r1.py").write_bytes(BODIES[1])
    hashed: list[Path] = []
    real = record_import.full_sha256
    monkeypatch.setattr(record_import, "full_sha256", lambda p: hashed.append(Path(p)) or real(p))
    import_records(tree, suite_pins(tasks), tmp_path / "cache")
    assert tree / "r1.py" in hashed and not any(p.parent == tree and p.suffix == ".bin" for p in hashed)


def test_pins_without_a_size_fall_back_to_hashing_small_files(tmp_path: Path) -> None:
    tasks = load_suite(pinned_suite(tmp_path, with_size=False))
    tree = generated_tree(tmp_path)
    result = import_records(tree, suite_pins(tasks), tmp_path / "cache")
    assert len(result.imported) == 2
    assert any("no pinned size" in n for n in result.stats.notes)


def test_the_walk_stops_once_every_pin_is_present(tmp_path: Path) -> None:
    tasks = load_suite(pinned_suite(tmp_path))
    tree = tmp_path / "all"
    for k, body in BODIES.items():
        (tree / f"r{k}").mkdir(parents=True)
        (tree / f"r{k}" / "train_gpt2.py").write_bytes(body)
    (tree / "zz_later").mkdir()
    (tree / "zz_later" / "decoy.py").write_bytes(decoy(1))
    result = import_records(tree, suite_pins(tasks), tmp_path / "cache")
    assert len(result.imported) == 3 and result.stopped_early and not result.stats.decoys


def test_already_cached_scripts_are_reported_and_not_walked_for(tmp_path: Path) -> None:
    tasks = load_suite(pinned_suite(tmp_path))
    tree = generated_tree(tmp_path)
    cache = tmp_path / "cache"
    import_records(tree, suite_pins(tasks), cache)
    again = import_records(tree, suite_pins(tasks), cache)
    assert not again.imported and len(again.cached) == 2
    assert resolve_task(tasks[0], cache).target.script.path == cached_path(cache, tasks[0].target.script)


def test_a_tampered_cache_entry_is_replaced_by_the_pinned_file(tmp_path: Path) -> None:
    tasks = load_suite(pinned_suite(tmp_path))
    cache = tmp_path / "cache"
    bad = cached_path(cache, tasks[0].start.script)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"tampered")
    result = import_records(generated_tree(tmp_path), suite_pins(tasks), cache)
    assert tasks[0].start.script.sha256 in result.imported and bad.read_bytes() == BODIES[1]


def test_an_unreadable_file_is_skipped_with_a_note(tmp_path: Path, monkeypatch) -> None:
    """Stands in for any open() failure (root ignores chmod 000): the walk notes the file and goes on."""
    tasks = load_suite(pinned_suite(tmp_path))
    tree = generated_tree(tmp_path)
    blocked = tree / "0_decoy_record_2.py"
    real = record_import.full_sha256

    def sha(path: Path) -> str:
        if Path(path) == blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(record_import, "full_sha256", sha)
    result = import_records(tree, suite_pins(tasks), tmp_path / "cache")
    assert f"{blocked}: unreadable (Permission denied); skipped" in result.stats.notes
    assert len(result.imported) == 2


@pytest.mark.skipif(AS_ROOT, reason=ROOT_SKIP)
def test_chmod_000_files_and_folders_are_skipped_with_a_note(tmp_path: Path) -> None:
    tasks = load_suite(pinned_suite(tmp_path))
    tree = generated_tree(tmp_path)
    (tree / "0_decoy_record_2.py").chmod(0)
    (tree / "a" / "b").chmod(0)  # hides record 1 and the loop
    try:
        result = import_records(tree, suite_pins(tasks), tmp_path / "cache")
    finally:
        (tree / "a" / "b").chmod(0o755)
    notes = "\n".join(result.stats.notes)
    assert "0_decoy_record_2.py: unreadable (Permission denied)" in notes
    assert f"{tree / 'a' / 'b'}: cannot list it (Permission denied)" in notes
    assert len(result.imported) == 1


def test_cli_reports_per_task_and_names_what_is_missing(tmp_path: Path, capsys) -> None:
    suite = pinned_suite(tmp_path)
    tree = generated_tree(tmp_path)
    args = ["fetch", "records", "--from", str(tree), "--suite", str(suite), "--cache-dir", str(tmp_path / "c")]
    assert cli.main(args) == 1
    out, err = capsys.readouterr()
    assert "net01  start record 1: found             target record 2: found" in out
    assert "net02  start record 2: found             target record 3: missing" in out
    assert "4 pinned reference(s), 3 distinct file(s): 2 found, 0 already cached, 1 missing" in out
    assert "refused 2 of a pinned size" in out
    assert err.count("\n") == 1 and "is incomplete: 1 pinned script(s) not found" in err
    assert f"record 3 (sha256 {hashlib.sha256(BODIES[3]).hexdigest()}, {len(BODIES[3])} bytes; net02 target)" in err
    assert "Traceback" not in err
    (tree / "r3.py").write_bytes(BODIES[3])
    assert cli.main(args) == 0
    assert "1 found, 2 already cached, 0 missing" in capsys.readouterr().out


def test_cli_rejects_a_missing_folder_in_one_line(tmp_path: Path, capsys) -> None:
    assert cli.main(["fetch", "records", "--from", str(tmp_path / "nope"), "--suite", str(pinned_suite(tmp_path)),
                     "--cache-dir", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--from" in err and "not a directory" in err
