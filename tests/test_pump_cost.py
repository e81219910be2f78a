"""The pump's cheaper sampling (issue 23): the run's tree is found by walking down from its root, with the same
answer as the full /proc scan, and the pump still runs on the standard library alone (started with -S)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_speedrun.execution import pump
from pytest_speedrun.execution.runner import pump_command

TREE = ("import subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-S', '-c', 'import time; time.sleep(30)']) for _ in range(2)]\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n")


@pytest.fixture
def tree():
    proc = subprocess.Popen([sys.executable, "-S", "-c", TREE], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield proc.pid
    finally:
        for pid in pump._scan_descendants(proc.pid)[::-1]:
            subprocess.run(["kill", "-9", str(pid)], check=False)
        proc.wait(timeout=10)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux /proc only")
def test_tree_walk_finds_what_the_full_scan_finds(tree: int) -> None:
    walked = pump._descendants(tree)
    assert sorted(walked) == sorted(pump._scan_descendants(tree))
    assert len(walked) == 3 and walked[0] == tree  # the root and its two children


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux /proc only")
def test_tree_walk_falls_back_to_the_scan_without_children_files(tree: int, monkeypatch) -> None:
    monkeypatch.setattr(pump, "_task_children", lambda pid: None)
    assert len(pump._descendants(tree)) == 3


def test_a_gone_root_is_its_own_tree() -> None:
    proc = subprocess.Popen([sys.executable, "-S", "-c", "pass"])
    proc.wait()
    time.sleep(0.05)
    assert pump._descendants(proc.pid) == [proc.pid]


def test_the_pump_starts_without_site(tmp_path: Path) -> None:
    cmd = pump_command([sys.executable, "-c", "print('hi')"], tmp_path / "run.log", "m", 0)
    assert cmd[:3] == [sys.executable, "-S", pump.__file__]
    done = subprocess.run(cmd, capture_output=True, timeout=60, start_new_session=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run.log").read_text() == "hi\n"


def test_without_probes_the_pump_takes_none_and_writes_no_probe_s(tmp_path: Path) -> None:
    """A run whose probe no rule can consult (`item.probes_consulted`) skips the probes: its stats have no
    probe_s, where a probed run's have one (the median of 3 + 3)."""
    from pytest_speedrun.execution.runner import read_cpu_stats

    for probes, log in ((True, tmp_path / "probed.log"), (False, tmp_path / "bare.log")):
        cmd = pump_command([sys.executable, "-c", "print('hi')"], log, "m", 0, probes=probes)
        assert ("--probes" in cmd) is not probes
        done = subprocess.run(cmd, capture_output=True, timeout=60, start_new_session=True)
        assert done.returncode == 0, done.stderr
        assert ("probe_s" in read_cpu_stats(log)) is probes and read_cpu_stats(log)["wall_s"] > 0


def test_only_runs_of_calibrated_time_tasks_are_probed() -> None:
    from dataclasses import replace

    from pytest_speedrun.judging.status import STEPS
    from pytest_speedrun.pipeline.item import probes_consulted
    from pytest_speedrun.tasks.manifest import find_suite, load_task

    task = load_task(find_suite("tiny") / "tiny04.toml")
    assert task.reference == "calibrate" and probes_consulted(task)
    assert not probes_consulted(replace(task, reference="manifest"))
    assert not probes_consulted(replace(task, metric=STEPS))
