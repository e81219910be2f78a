"""Pipeline: a session's wiring (session), one item's way through it (item: workspace, agent, runs, judging, record),
calibration of the references, replay and smoke mode.
"""

from pytest_speedrun.files import lazy_exports

__all__ = [
    "Calibrator",
    "Execution",
    "ItemRequest",
    "RunSettings",
    "SessionInfo",
    "SpeedrunSession",
    "execute_script",
    "run_item",
]

__getattr__ = lazy_exports(__name__, {
    "Calibrator": "calibrate",
    "Execution": "item",
    "ItemRequest": "item",
    "RunSettings": "item",
    "SessionInfo": "session",
    "SpeedrunSession": "session",
    "execute_script": "item",
    "run_item": "item",
})
