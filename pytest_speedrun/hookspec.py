"""pytest-speedrun's own hooks, for conftest.py files and other plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_speedrun.agents.base import Agent


@pytest.hookspec(firstresult=True)
def pytest_speedrun_make_agent(name: str, arg: str | None, config: pytest.Config) -> Agent | None:
    """Return an agent for `--speedrun-agent=name[:arg]`, or None to let other sources try.

    Example (conftest.py)::

        def pytest_speedrun_make_agent(name, arg, config):
            if name == "mine":
                return MyAgent(arg)
    """
