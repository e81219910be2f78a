"""Agents: the interface, the offline kinds and the registry (imported on first use: the coding and LLM agents
load only when one is asked for)."""

from pytest_speedrun.files import lazy_exports

__all__ = ["Agent", "AgentContext", "AgentResources", "NodeResult", "Solution", "available_agents", "make_agent"]

__getattr__ = lazy_exports(__name__, {
    "Agent": "base",
    "AgentContext": "base",
    "AgentResources": "base",
    "NodeResult": "base",
    "Solution": "base",
    "available_agents": "registry",
    "make_agent": "registry",
})
