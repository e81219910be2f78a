"""Agents: the interface, the offline kinds and the registry."""

from .base import Agent, AgentContext, Solution
from .registry import available_agents, make_agent

__all__ = ["Agent", "AgentContext", "Solution", "available_agents", "make_agent"]
