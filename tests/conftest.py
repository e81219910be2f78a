"""Shared fixtures. `pytester` drives real pytest runs for plugin behaviour."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import pytest

from fakes import sigint_default, write_suite
from pytest_speedrun.agents.base import AgentContext
from pytest_speedrun.pipeline.item import prepare_workspace
from pytest_speedrun.tasks.manifest import load_task

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session", autouse=True)
def own_lease_pool(tmp_path_factory: pytest.TempPathFactory):
    """The test run's sessions take their cores and the timing slot from a pool of their own (SPEEDRUN_LEASE_DIR),
    not the host's: a tiny-suite session or a benchmark running beside the tests would otherwise hold the slot
    while a test waits for its run to start (a CI run next to a developer's sessions failed four tests that way).
    Within the test run the slot still holds: its sessions, subprocesses included, share this pool."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPEEDRUN_LEASE_DIR", str(tmp_path_factory.mktemp("leases")))
        yield


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache (tiny corpus, calibration) for the whole test session: the corpus is generated once."""
    return tmp_path_factory.mktemp("speedrun-cache")


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    """The fake 'mini' suite inside the pytester directory."""
    return write_suite(pytester.path / "suites")


@pytest.fixture
def run(pytester: pytest.Pytester, suite: Path, cache_dir: Path):
    """Run pytest on the mini suite (in process, or in a subprocess for signals and xdist)."""
    def _run(*args: str, subprocess: bool = False) -> pytest.RunResult:
        # "--opt=value" forms: pytest would take a separate existing-path value into its rootdir guess.
        full = (f"--speedrun-suite={suite}", f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider", *args)
        return pytester.runpytest_subprocess(*full) if subprocess else pytester.runpytest(*full)
    return _run


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    threading.Thread(target=lambda: [server.accept()[0].close() for _ in range(10)], daemon=True).start()
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def ctx(tmp_path: Path) -> AgentContext:
    """An agent's context on the mini suite's first task, with hint level 1."""
    task = load_task(write_suite(tmp_path / "s") / "mini01.toml")
    art = tmp_path / "art"
    art.mkdir()
    workspace, script, hints = prepare_workspace(task, (1,), art)
    return AgentContext(task=task, workspace=workspace, script_path=script, hints=hints, hint_levels=(1,), seed=4,
                        artifacts_dir=art, timeout_s=20)


@pytest.fixture
def spawn():
    """Start a process a test will signal (a pytest to interrupt or kill): SIGINT at its default in it
    (fakes.sigint_default), and killed at teardown if the test left it running, since a leftover pytest would
    hold the timing slot and its runs and stall the tests after it."""
    started: list[subprocess.Popen] = []

    def _spawn(cmd: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, preexec_fn=sigint_default, **kwargs)
        started.append(proc)
        return proc
    yield _spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
