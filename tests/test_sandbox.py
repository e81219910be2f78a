"""Isolation of training runs: network namespaces, bubblewrap, memory limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fakes import CONNECT
from pytest_speedrun.errors import UsageError
from pytest_speedrun.execution import runner
from pytest_speedrun.execution.sandbox import Sandbox, probe


def _run(tmp_path: Path, body: str, sandbox: Sandbox, **kw) -> str:
    script = tmp_path / "train_gpt2.py"
    script.write_text(body)
    spec = runner.RunSpec(script=script, workdir=tmp_path, log_path=tmp_path / "run.log",
                          env={"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1"}, timeout_s=60,
                          prefix=tuple(sandbox.prefix(tmp_path)), **kw)
    runner.run(spec)
    return (tmp_path / "run.log").read_text()


def test_without_a_sandbox_the_run_reaches_the_network(tmp_path: Path, listener: int) -> None:
    assert "CONNECTED" in _run(tmp_path, CONNECT.format(port=listener), Sandbox("none", True))


@pytest.mark.parametrize("kind", ["netns", "bwrap"])
def test_a_sandboxed_run_cannot_reach_the_hosts_network(tmp_path: Path, listener: int, kind: str) -> None:
    sandbox = probe(kind)
    if not sandbox.available:
        pytest.skip(sandbox.describe())
    assert "BLOCKED" in _run(tmp_path, CONNECT.format(port=listener), sandbox)


def test_bwrap_makes_everything_outside_the_workspace_read_only(tmp_path: Path) -> None:
    sandbox = probe("bwrap")
    if not sandbox.available:
        pytest.skip(sandbox.describe())
    outside = Path(__file__).parent / f".sandbox-probe-{os.getpid()}"  # outside /tmp, which bwrap makes private
    work = tmp_path / "ws"
    work.mkdir()
    body = (f"open('inside.txt', 'w').write('ok')\n"
            f"try:\n    open({str(outside)!r}, 'w').write('x'); print('WROTE')\n"
            f"except OSError as e:\n    print('DENIED', e)\n")
    try:
        out = _run(work, body, sandbox)
        assert "DENIED" in out and (work / "inside.txt").read_text() == "ok" and not outside.exists()
    finally:
        outside.unlink(missing_ok=True)


def test_an_unavailable_sandbox_says_in_one_line_what_is_not_isolated() -> None:
    line = Sandbox("bwrap", False, "bwrap not found").describe()
    assert "\n" not in line and "NOT isolated" in line and "network" in line
    with pytest.raises(UsageError, match="unknown sandbox"):
        probe("docker")


def test_the_memory_limit_stops_a_run_that_allocates_too_much(tmp_path: Path) -> None:
    body = "x = bytearray(1024 * 1024 * 1024)\nprint('ALLOCATED')\n"
    out = _run(tmp_path, body, Sandbox("none", True), max_memory_bytes=256 * 1024 * 1024)
    assert "MemoryError" in out and "ALLOCATED" not in out
