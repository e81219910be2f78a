"""Compute resources for a run. For now: how many CPU threads a run may use.

Runs started by different xdist workers share the machine, so each gets an equal slice of the cores the
pytest process may use; the slice is handed to the run as OMP_NUM_THREADS (torch honours it).
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return os.cpu_count() or 1


def cpu_threads(workers: int | None = None, override: int | None = None) -> int:
    """Threads per run: `override` if given, else the usable cores divided among the xdist workers."""
    if override is not None:
        return max(1, override)
    if workers is None:
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    return max(1, usable_cores() // max(1, workers))
