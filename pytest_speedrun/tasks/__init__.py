"""Tasks: the suites' manifests (Task, load_suite), hint texts, and fetching and importing the pinned record scripts.
"""

from pytest_speedrun.files import lazy_exports

__all__ = [
    "FetchError",
    "Launch",
    "Record",
    "ScriptRef",
    "Task",
    "adhoc_task",
    "available_suites",
    "fetch_fineweb",
    "fetch_script",
    "find_suite",
    "hint_text",
    "load_suite",
    "load_task",
    "parse_regimes",
    "regime_label",
    "resolve_task",
    "suite_dirs",
]

__getattr__ = lazy_exports(__name__, {
    "FetchError": "fetch",
    "Launch": "manifest",
    "Record": "manifest",
    "ScriptRef": "manifest",
    "Task": "manifest",
    "adhoc_task": "manifest",
    "available_suites": "manifest",
    "fetch_fineweb": "fetch",
    "fetch_script": "fetch",
    "find_suite": "manifest",
    "hint_text": "hints",
    "load_suite": "manifest",
    "load_task": "manifest",
    "parse_regimes": "hints",
    "regime_label": "hints",
    "resolve_task": "fetch",
    "suite_dirs": "manifest",
})
