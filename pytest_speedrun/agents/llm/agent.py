"""The LLM agent: a chat model behind an OpenAI-compatible endpoint that searches with a scaffold, one
`LLMClient` per item; and the agent factories for the presets and custom tables (`llm_factories`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pytest_speedrun.agents.base import AgentContext, Solution
from pytest_speedrun.agents.llm.client import LLMClient, _one_line, make_openai_client
from pytest_speedrun.agents.llm.settings import PRESETS, ConfigSource, LLMSettings, resolve_settings
from pytest_speedrun.agents.llm.transcript import llm_replies
from pytest_speedrun.agents.scaffolds import Prompts, Search
from pytest_speedrun.errors import AgentError


class LLMAgent:
    """An untrusted agent: a chat model behind an OpenAI-compatible endpoint, searching with a scaffold."""

    def __init__(self, name: str, settings: LLMSettings) -> None:
        self.name, self.settings = name, settings
        self.prompts = Prompts(settings.prompts)  # UsageError now for a bad override, not in every item
        self._served_model: str | None = None

    @property
    def config(self) -> dict[str, Any]:
        """What makes runs of this agent the same experiment (the resume key) and what reports show."""
        s = self.settings
        params = dict(s.search.relevant(), **s.sampling())
        params.update({k: v for k, v in (("max_cost", s.max_cost), ("max_llm_calls", s.max_llm_calls),
                                        ("max_llm_tokens", s.max_llm_tokens)) if v is not None})
        params["prompts"] = self.prompts.digest
        return {"model": s.model or self._model_or_blank(), "scaffold": s.scaffold, "base_url": s.endpoint(),
                "params": params}

    def _model_or_blank(self) -> str:
        try:
            return self._resolve_model()
        except AgentError:
            return ""

    def _resolve_model(self) -> str:
        """A `local` agent without a model uses the first model its server lists (one GET /models)."""
        if self.settings.model:
            return self.settings.model
        if self._served_model is None:
            try:
                client = make_openai_client(self.settings).with_options(timeout=30.0)
                models = [m.id for m in client.models.list()]
            except AgentError:
                raise
            except Exception as exc:
                raise AgentError(f"{self.name}: no model set and {self.settings.endpoint()}/models failed "
                                 f"({_one_line(str(exc), 120)}); set --speedrun-model") from None
            if not models:
                raise AgentError(f"{self.name}: no model set and {self.settings.endpoint()} serves none; "
                                 "set --speedrun-model")
            self._served_model = models[0]
        return self._served_model

    def preflight(self) -> None:
        """Fail before any work when the API key is missing (one line naming the variable)."""
        var = self.settings.api_key_env
        if var and not os.environ.get(var, "").strip():
            raise AgentError(f"{var} is not set: the {self.name} agent needs an API key in {var}")
        if self.settings.llm_cache != "read":  # a pure replay must not need the package or the server
            try:
                import openai  # noqa: F401
            except ImportError:
                raise AgentError("the openai package is not installed: pip install 'pytest-speedrun[llm]'") from None
        if not self.settings.model:
            self._resolve_model()

    def solve(self, ctx: AgentContext) -> Solution:
        settings = self.settings if self.settings.model else replace(self.settings, model=self._resolve_model())
        client = LLMClient(settings, self.name, ctx.artifacts_dir, ctx.seed, wall_s=ctx.timeout_s,
                           replies=llm_replies(ctx.resume_from))
        return Search(settings.search, ctx, client, self.prompts).run()


def make_llm_agent(name: str, model_arg: str | None = None, source: ConfigSource | None = None) -> LLMAgent:
    return LLMAgent(name, resolve_settings(name, model_arg, source))


def llm_factories(source: ConfigSource) -> dict[str, Callable[[str | None], LLMAgent]]:
    """Agent factories for the presets and for every custom table (`[tool.pytest-speedrun.agents.NAME]` with a
    `preset` key), bound to `source`."""
    names = set(PRESETS) | {n for n, t in source.tables.items() if "preset" in t}
    return {n: (lambda arg, n=n: make_llm_agent(n, arg, source)) for n in sorted(names)}
