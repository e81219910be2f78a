"""Session settings: the validated form of the `--speedrun-*` options and ini keys (no pytest here)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from .errors import UsageError
from .hints import parse_regimes

CACHE_ENV = "PYTEST_SPEEDRUN_CACHE"


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("pytest-speedrun"))


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
    data_dir: Path | None = None
    extra: dict = field(default_factory=dict)


def _positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise UsageError(f"{name}={value}: must be {'non-negative' if allow_zero else 'positive'}")


def build_settings(
    *, agent: str | None, suites: list[str], hints: str, seeds: int, min_fsr: float | None, calibrate: bool,
    calibration_runs: int, results_dir: Path, cache_dir: Path | None, timeout_s: float | None,
    agent_timeout_s: float, threads: int | None, python: str | None, data_dir: Path | None,
) -> Settings:
    """Validate option values; raise UsageError naming the option on the first bad one."""
    _positive("--speedrun-seeds", seeds)
    _positive("--speedrun-calibration-runs", calibration_runs)
    _positive("--speedrun-timeout", timeout_s)
    _positive("--speedrun-agent-timeout", agent_timeout_s)
    _positive("--speedrun-threads", threads)
    if data_dir is not None and not data_dir.is_dir():
        raise UsageError(f"--speedrun-data={data_dir}: not a directory; point it at the folder holding the .bin shards")
    if python is not None and not Path(python).exists():
        raise UsageError(f"--speedrun-python={python}: no such interpreter")
    return Settings(
        agent=agent or None, suites=tuple(dict.fromkeys(suites)), regimes=tuple(parse_regimes(hints)), seeds=seeds,
        min_fsr=min_fsr, calibrate=calibrate, calibration_runs=calibration_runs, results_dir=results_dir,
        cache_dir=cache_dir or default_cache_dir(), timeout_s=timeout_s, agent_timeout_s=agent_timeout_s,
        threads=threads, python=python or sys.executable, data_dir=data_dir,
    )
