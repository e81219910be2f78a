"""Agents: the interface, the offline kinds and the registry."""

from pytest_speedrun.agents.base import Agent, AgentContext, AgentResources, NodeResult, Solution
from pytest_speedrun.agents.registry import available_agents, make_agent

__all__ = ["Agent", "AgentContext", "AgentResources", "NodeResult", "Solution", "available_agents", "make_agent"]
