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

from pytest_speedrun.agents.llm.agent import LLMAgent, llm_factories, make_llm_agent
from pytest_speedrun.agents.llm.cache import ResponseCache
from pytest_speedrun.agents.llm.client import LLMClient, Reply, Usage, make_openai_client
from pytest_speedrun.agents.llm.settings import (
    AGENT_KEYS,
    CACHE_MODES,
    CONVERTERS,
    PRESETS,
    SEARCH_KEYS,
    ConfigSource,
    LLMSettings,
    Preset,
    read_agent_tables,
    resolve_settings,
)
from pytest_speedrun.agents.llm.transcript import Transcript, llm_replies

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
