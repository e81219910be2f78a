import hashlib
from array import array
from pathlib import Path

import pytest

from pytest_speedrun.data import dataset as data
from pytest_speedrun.errors import DataError


def test_shard_round_trip_keeps_tokens_and_header(tmp_path: Path) -> None:
    path = tmp_path / "fineweb_val_000000.bin"
    data.write_shard(path, [0, 1, 65535, 50256])
    assert data.read_header(path).num_tokens == 4
    assert list(data.read_tokens(path)) == [0, 1, 65535, 50256]
    assert path.stat().st_size == 1024 + 8


def _raw_shard(path: Path, magic: int = data.MAGIC, version: int = 1, count: int = 3, tokens: int = 3) -> Path:
    header = array("i", [0] * 256)
    header[0], header[1], header[2] = magic, version, count
    path.write_bytes(header.tobytes() + array("H", range(tokens)).tobytes())
    return path


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"magic": 123}, "magic 123 is not 20240520"), ({"version": 2}, "version 2"),
     ({"count": 5}, "header says 5 tokens")],
)
def test_bad_shard_header_is_a_clear_error(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = _raw_shard(tmp_path / "s.bin", **kwargs)
    with pytest.raises(DataError, match=message) as exc:
        data.read_header(path)
    assert str(path) in str(exc.value)


def test_file_shorter_than_header_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match="truncated"):
        data.read_header(path)


def test_tiny_corpus_is_bit_identical_to_the_pinned_digest() -> None:
    # The digest pins the generator: any platform/Python difference or code change shows up here.
    tokens = data.generate_tiny_tokens(50_000, seed=1)
    assert hashlib.sha256(tokens.tobytes()).hexdigest() == PINNED_DIGEST


PINNED_DIGEST = "79baf01ebf652b6fcfd97fd2fe4273b79e9be7d3880f4ce76df5844e2d98cfe0"


def test_tiny_corpus_has_documents_and_verbatim_copy_spans() -> None:
    tokens = list(data.generate_tiny_tokens(200_000, seed=3))
    assert tokens[0] == data.TINY_EOT
    assert max(tokens) < data.TINY_VOCAB
    copies = [i for i, t in enumerate(tokens) if t == data.TINY_COPY]
    assert len(copies) > 100
    # Every copy marker is followed by a span that appeared earlier in the same document.
    for i in copies[:50]:
        doc_start = max(j for j in range(i) if tokens[j] == data.TINY_EOT)
        span = tokens[i + 1 : i + 1 + data._SPAN_LEN[0]]
        if data.TINY_EOT in span:
            continue
        earlier = tokens[doc_start:i]
        assert any(earlier[k : k + len(span)] == span for k in range(len(earlier) - len(span) + 1))


def test_ensure_tiny_dataset_generates_once_and_validates(tmp_path: Path) -> None:
    ds = data.ensure_tiny_dataset(tmp_path)
    shards = sorted(ds.root.glob("*.bin"))
    assert [s.name for s in shards] == ["fineweb_train_000001.bin", "fineweb_train_000002.bin",
                                        "fineweb_val_000000.bin"]
    assert data.read_header(shards[-1]).num_tokens == data.TINY_VAL_TOKENS
    mtime = shards[0].stat().st_mtime_ns
    assert data.ensure_tiny_dataset(tmp_path) == ds
    assert shards[0].stat().st_mtime_ns == mtime


def test_fineweb_dataset_missing_is_a_skip_with_the_fix(tmp_path: Path) -> None:
    from pytest_speedrun.errors import MissingInput

    with pytest.raises(MissingInput, match="--speedrun-data"):
        data.fineweb_dataset(None, 1)
    data.write_shard(tmp_path / "fineweb_val_000000.bin", [1, 2])
    data.write_shard(tmp_path / "fineweb_train_000001.bin", [1, 2])
    with pytest.raises(MissingInput, match="1 train shards, this task needs 2"):
        data.fineweb_dataset(tmp_path, 2)
    assert data.fineweb_dataset(tmp_path, 1).val_tokens == data.FINEWEB_VAL_TOKENS
