"""Resolve `--speedrun-agent=NAME[:ARG]` to an agent.

Sources, in order: factories passed by the caller (the plugin passes what the `pytest_speedrun_make_agent`
hook returned), the built-ins, then the `pytest_speedrun.agents` entry-point group, whose entries name a
callable `factory(arg: str | None) -> Agent`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from pytest_speedrun.agents.base import Agent
from pytest_speedrun.agents.static import BaselineAgent, OracleAgent
from pytest_speedrun.errors import UsageError

ENTRY_POINT_GROUP = "pytest_speedrun.agents"
Factory = Callable[[str | None], Agent]

# The names of the coding-agent CLI presets (agents/coding.py's PRESETS) and the LLM presets (agents/llm/settings.py's
# PRESETS), spelled here so that listing or resolving an agent imports neither module until one of them is asked
# for: the coding agents pull in the command agent's machinery, the LLM agents the client and the scaffolds
# (tests/test_lazy_imports.py keeps these lists equal to the modules' own).
CODING_PRESET_NAMES = ("aider", "claude-code", "codex", "gemini-cli")
LLM_PRESET_NAMES = ("claude", "deepseek", "local", "openai")


def _command(arg: str | None) -> Agent:
    from pytest_speedrun.agents.command import CommandAgent

    return CommandAgent(arg or "")


def _coding(name: str) -> Factory:
    def factory(arg: str | None) -> Agent:
        from pytest_speedrun.agents.coding import make_coding_agent

        return make_coding_agent(name, arg)
    return factory


def _llm(name: str) -> Factory:
    def factory(arg: str | None) -> Agent:
        from pytest_speedrun.agents.llm.agent import make_llm_agent

        return make_llm_agent(name, arg)
    return factory


BUILTINS: dict[str, Factory] = {
    "baseline": lambda arg: BaselineAgent(),
    "oracle": lambda arg: OracleAgent(),
    "command": _command,
    # Coding-agent CLIs as command agents (coding.py); the text after the colon is the model.
    **{name: _coding(name) for name in CODING_PRESET_NAMES},
    # LLM presets with their defaults and the environment; the plugin passes factories that also read the
    # pyproject/ini tables and the CLI options (`llm_factories`).
    **{name: _llm(name) for name in LLM_PRESET_NAMES},
}


def _entry_point_factories() -> dict[str, Factory]:
    return {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_agents(extra: dict[str, Factory] | None = None) -> list[str]:
    names = set(BUILTINS) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(extra or {})
    # The offline agents first, then the coding-agent presets, then the LLM presets.
    return sorted((f"{n}:<shell command>" if n == "command" else n for n in names),
                  key=lambda n: (n in LLM_PRESET_NAMES, n in CODING_PRESET_NAMES, n))


def make_agent(spec: str, extra: dict[str, Factory] | None = None) -> Agent:
    """Build the agent named by `spec`; raise UsageError listing the available agents if unknown."""
    name, sep, arg = spec.partition(":")
    factories = dict(BUILTINS)
    if name not in factories and name not in (extra or {}):
        factories.update(_entry_point_factories())
    factories.update(extra or {})
    if name not in factories:
        raise UsageError(f"--speedrun-agent={spec}: unknown agent {name!r}; available: "
                         f"{', '.join(available_agents(extra))}")
    agent = factories[name](arg if sep else None)
    if not isinstance(agent, Agent):
        raise UsageError(f"--speedrun-agent={spec}: factory returned {type(agent).__name__}, which has no "
                         "'name' attribute and 'solve(ctx)' method")
    return agent
