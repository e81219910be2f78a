"""Session settings: the validated form of the `--speedrun-*` options and ini keys (no pytest here)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from pytest_speedrun.errors import UsageError
from pytest_speedrun.execution.resources import parse_gpu_list
from pytest_speedrun.execution.sandbox import KINDS
from pytest_speedrun.judging.status import LAUNCHERS, LOCAL, Launcher
from pytest_speedrun.tasks.hints import parse_regimes

if TYPE_CHECKING:  # the Slurm module loads only for a Slurm session (session.py)
    from pytest_speedrun.execution.slurm import SlurmConfig

CACHE_ENV = "PYTEST_SPEEDRUN_CACHE"


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("pytest-speedrun"))


def default_data_dir() -> Path:
    """Where `pytest-speedrun fetch data` puts FineWeb by default, and where items look without --speedrun-data."""
    return default_cache_dir() / "fineweb10B"


@dataclass(frozen=True)
class Settings:
    agent: str | None
    suites: tuple[str, ...]
    regimes: tuple[tuple[int, ...], ...]
    seeds: int
    min_fsr: float | None
    calibrate: bool
    calibration_runs: int
    results_dir: Path
    cache_dir: Path
    timeout_s: float | None
    agent_timeout_s: float
    threads: int | None
    python: str = sys.executable
    python_override: bool = False  # --speedrun-python given: every run uses it, whatever runtime a task names
    runtimes: tuple[tuple[str, str], ...] = ()  # (runtime name, interpreter) the user mapped (--speedrun-runtime)
    data_dir: Path | None = None
    allow_suspicious: bool = False
    sandbox: str = "none"
    agent_network: bool = False  # command: agents keep the network inside the sandbox (they call an API)
    max_memory_bytes: int | None = None
    nproc: int | None = None
    gpus: str | None = None
    resume: bool = False
    repeats: int = 1
    cumulative: bool = False
    hints_dir: Path | None = None
    smoke: bool = False
    launcher: Launcher = LOCAL
    slurm: SlurmConfig | None = None
    recheck_after_s: float = 900.0  # a control check of the references on this machine is valid this long
    timed_runs: int = 1  # timed CPU runs at once on this host (the timing slot's width, resources.LeasePool)


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_memory(value: str) -> int:
    """'16G', '512M', '1073741824' -> bytes; UsageError naming the option otherwise."""
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1] if text and text[-1] in _UNITS else ""
    try:
        number = float(text[: len(text) - len(unit)])
    except ValueError:
        raise UsageError(f"--speedrun-max-memory={value}: not a size; use e.g. 16G or 512M") from None
    if number <= 0:
        raise UsageError(f"--speedrun-max-memory={value}: must be positive")
    return int(number * _UNITS[unit])


def _positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise UsageError(f"{name}={value}: must be {'non-negative' if allow_zero else 'positive'}")


def build_settings(
    *, agent: str | None, suites: list[str], hints: str, seeds: int, min_fsr: float | None, calibrate: bool,
    calibration_runs: int, results_dir: Path, cache_dir: Path | None, timeout_s: float | None,
    agent_timeout_s: float, threads: int | None, python: str | None, data_dir: Path | None,
    allow_suspicious: bool = False, sandbox: str = "none", max_memory: str | None = None, nproc: int | None = None,
    gpus: str | None = None, resume: bool = False, repeats: int = 1, cumulative: bool = False,
    hints_dir: Path | None = None, smoke: bool = False, launcher: str = LOCAL, slurm: SlurmConfig | None = None,
    agent_network: bool = False, recheck_after_s: float = 900.0, runtimes: list[str] | None = None,
    timed_runs: int = 1,
) -> Settings:
    """Validate option values; raise UsageError naming the option on the first bad one."""
    _positive("--speedrun-seeds", seeds)
    _positive("--speedrun-calibration-runs", calibration_runs)
    if recheck_after_s < 0:
        raise UsageError(f"--speedrun-recheck-after={recheck_after_s:g}: must be 0 (every session) or more seconds")
    _positive("--speedrun-timeout", timeout_s)
    _positive("--speedrun-agent-timeout", agent_timeout_s)
    _positive("--speedrun-threads", threads)
    _positive("--speedrun-nproc", nproc)
    _positive("--speedrun-repeats", repeats)
    _positive("--speedrun-timed-runs", timed_runs)
    if gpus is not None:
        parse_gpu_list(gpus)
    if data_dir is not None and not data_dir.is_dir():
        raise UsageError(f"--speedrun-data={data_dir}: not a directory; point it at the folder holding the .bin shards")
    if python is not None and not Path(python).exists():
        raise UsageError(f"--speedrun-python={python}: no such interpreter")
    mapped = parse_runtime_map(runtimes or [])
    if hints_dir is not None and not hints_dir.is_dir():
        raise UsageError(f"--speedrun-hints-dir={hints_dir}: not a directory; give the folder holding record_N/")
    if launcher not in LAUNCHERS:
        raise UsageError(f"--speedrun-launcher={launcher}: unknown launcher; use {' or '.join(LAUNCHERS)}")
    if sandbox not in KINDS:
        raise UsageError(f"--speedrun-sandbox={sandbox}: unknown sandbox; use one of {', '.join(KINDS)}")
    _check_writable("--speedrun-results", results_dir)
    return Settings(
        agent=agent or None, suites=tuple(dict.fromkeys(suites)), regimes=tuple(parse_regimes(hints)), seeds=seeds,
        min_fsr=min_fsr, calibrate=calibrate, calibration_runs=calibration_runs, results_dir=results_dir,
        cache_dir=cache_dir or default_cache_dir(), timeout_s=timeout_s, agent_timeout_s=agent_timeout_s,
        threads=threads, python=python or sys.executable, python_override=python is not None, runtimes=mapped,
        data_dir=data_dir, allow_suspicious=allow_suspicious,
        sandbox=sandbox, max_memory_bytes=parse_memory(max_memory) if max_memory else None, nproc=nproc,
        gpus=gpus, resume=resume, repeats=repeats, cumulative=cumulative, hints_dir=hints_dir, smoke=smoke,
        launcher=launcher, slurm=slurm, agent_network=agent_network, recheck_after_s=recheck_after_s,
        timed_runs=timed_runs,
    )


def parse_runtime_map(entries: list[str]) -> tuple[tuple[str, str], ...]:
    """`NAME=PATH` entries (`--speedrun-runtime`, ini `speedrun_runtimes`, where `NAME = PATH` also works) ->
    ((name, interpreter), ...); UsageError naming the entry when it is malformed or the interpreter is missing."""
    mapped: dict[str, str] = {}
    for entry in entries:
        name, sep, path = (part.strip() for part in str(entry).partition("="))
        if not sep or not name or not path:
            raise UsageError(f"--speedrun-runtime={entry!r} (or ini speedrun_runtimes): expected NAME=PATH, e.g. "
                             "torch-2.7.1=/opt/envs/t271/bin/python")
        interpreter = Path(path).expanduser()
        if not interpreter.exists():
            raise UsageError(f"--speedrun-runtime={name}={path} (or ini speedrun_runtimes): no such interpreter; "
                             f"fix the path or build the runtime: pytest-speedrun runtime build {name}")
        mapped[name] = str(interpreter)
    return tuple(sorted(mapped.items()))


def _check_writable(option: str, path: Path) -> None:
    """The results store must be writable before anything runs: results are never computed to be lost."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UsageError(f"{option}={path}: not writable ({probe} is not a writable directory); "
                         "choose another directory")
