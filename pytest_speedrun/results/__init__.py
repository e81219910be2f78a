"""Results: the results store, scoring (FSR against the references), statistics and timing noise, the terminal summary
and JUnit properties (summary), and what `pytest-speedrun report` writes (report).
"""

from pytest_speedrun.files import lazy_exports

__all__ = [
    "ItemResult",
    "ConfigAggregate",
    "Reference",
    "Score",
    "Spread",
    "TaskAggregate",
    "aggregate",
    "append_record",
    "bootstrap_ci",
    "fsr_interval",
    "iqm",
    "load_records",
    "pooled_spread",
    "read_records",
    "score",
    "summary_lines",
    "user_properties",
    "write_report",
]

__getattr__ = lazy_exports(__name__, {
    "ItemResult": "record",
    "ConfigAggregate": "stats",
    "Reference": "scoring",
    "Score": "scoring",
    "Spread": "noise",
    "TaskAggregate": "stats",
    "aggregate": "stats",
    "append_record": "store",
    "bootstrap_ci": "stats",
    "fsr_interval": "noise",
    "iqm": "stats",
    "load_records": "report",
    "pooled_spread": "noise",
    "read_records": "store",
    "score": "scoring",
    "summary_lines": "summary",
    "user_properties": "summary",
    "write_report": "report",
})
