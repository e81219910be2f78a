"""LLM agents: a chat model behind any OpenAI-compatible endpoint, driven by a search scaffold.

Presets `claude`, `openai`, `deepseek` and `local` give the endpoint, the API-key variable, a default model and
its prices. Settings come, lowest precedence first, from the preset, the `[tool.pytest-speedrun.agents.<name>]`
table of the rootdir's pyproject.toml, ini keys (`speedrun_agent_<name>_<key>` per agent, `speedrun_<key>` for
search settings), the model after the colon (`--speedrun-agent=claude:claude-opus-4-6`), and CLI options.

Per item, `LLMClient` owns the conversation channel: the openai client (its own retries off), our retries with
exponential backoff on 429, 5xx and timeouts, the caps (calls, tokens, cost, wall time), usage and cost
accounting, the JSONL transcript (`llm.jsonl`) and readable log (`agent.log`) in the item's artifacts, and the
response cache (`<cache dir>/llm/`).

One module per job:

- `settings`: the presets, `LLMSettings`, and reading them from pyproject tables, ini keys and CLI options.
- `client`: `LLMClient`, one item's channel to the model (retries, caps, usage and cost).
- `cache`: `ResponseCache`, the answers on disk.
- `transcript`: the `llm.jsonl` / `agent.log` format, written (`Transcript`) and read back (`llm_replies`).
- `agent`: `LLMAgent` and its factories (`make_llm_agent`, `llm_factories`).
"""

from __future__ import annotations

import importlib

# Where each name lives. The names load on first use (PEP 562), so that reading the option tables at pytest's
# start-up (options.py: PRESETS, AGENT_KEYS, SEARCH_KEYS) does not import the client, the agent and openai's
# dependencies for a session that runs no LLM agent.
_WHERE = {
    "LLMAgent": "agent", "llm_factories": "agent", "make_llm_agent": "agent",
    "ResponseCache": "cache",
    "LLMClient": "client", "Reply": "client", "Usage": "client", "make_openai_client": "client",
    "AGENT_KEYS": "settings", "CACHE_MODES": "settings", "CONVERTERS": "settings", "PRESETS": "settings",
    "SEARCH_KEYS": "settings", "ConfigSource": "settings", "LLMSettings": "settings", "Preset": "settings",
    "read_agent_tables": "settings", "resolve_settings": "settings",
    "Transcript": "transcript", "llm_replies": "transcript",
}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AGENT_KEYS",
    "CACHE_MODES",
    "CONVERTERS",
    "PRESETS",
    "SEARCH_KEYS",
    "ConfigSource",
    "LLMAgent",
    "LLMClient",
    "LLMSettings",
    "Preset",
    "Reply",
    "ResponseCache",
    "Transcript",
    "Usage",
    "llm_factories",
    "llm_replies",
    "make_llm_agent",
    "make_openai_client",
    "read_agent_tables",
    "resolve_settings",
]
