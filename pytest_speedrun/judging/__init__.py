"""Judging: the status vocabulary and Verdict (integrity), log parsing (metrics), the run contract, the leak scan, the
harness's own clock (timeline), the static rules, and the one judging call, `check()`.
"""

from pytest_speedrun.files import lazy_exports

__all__ = [
    "Checked",
    "Metrics",
    "Timeline",
    "Verdict",
    "check",
    "judge",
    "of_run",
    "parse_log",
    "parse_text",
]

__getattr__ = lazy_exports(__name__, {
    "Checked": "checks",
    "Metrics": "metrics",
    "Timeline": "timeline",
    "Verdict": "integrity",
    "check": "checks",
    "judge": "integrity",
    "of_run": "timeline",
    "parse_log": "metrics",
    "parse_text": "metrics",
})
