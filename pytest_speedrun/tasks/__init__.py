"""Tasks: the suites' manifests (Task, load_suite), their runtimes, hint texts, fetching and importing the pinned
record scripts, and the compat fixes applied to them.
"""

from pytest_speedrun.files import lazy_exports

__all__ = [
    "FIXES",
    "FetchError",
    "Launch",
    "Record",
    "Runtime",
    "ScriptRef",
    "Task",
    "adhoc_task",
    "apply_fixes",
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
    "FIXES": "compat",
    "FetchError": "fetch",
    "Launch": "manifest",
    "Record": "manifest",
    "Runtime": "runtimes",
    "ScriptRef": "manifest",
    "Task": "manifest",
    "adhoc_task": "manifest",
    "apply_fixes": "compat",
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
