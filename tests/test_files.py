"""The shared helpers of files.py, and the subpackages' public names."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from pytest_speedrun import files

SUBPACKAGES = ("tasks", "data", "execution", "judging", "pipeline", "results")


def test_write_atomic_writes_text_and_bytes_and_leaves_no_temporary(tmp_path: Path) -> None:
    files.write_atomic(tmp_path / "a.json", "{}\n")
    files.write_atomic(tmp_path / "b.bin", b"\x00\x01")
    files.write_atomic(tmp_path / "a.json", "[]\n")  # replaces
    assert (tmp_path / "a.json").read_text() == "[]\n" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_thread_env_sizes_every_pool() -> None:
    assert files.thread_env(3) == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3"}


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_public_name_of_a_subpackage_resolves(name: str) -> None:
    package = importlib.import_module(f"pytest_speedrun.{name}")
    assert package.__all__ and package.__doc__
    for public in package.__all__:
        assert getattr(package, public) is not None, public
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        package.nothing_here  # noqa: B018
