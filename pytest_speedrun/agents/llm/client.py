"""One item's channel to the model (`LLMClient`): the openai client (its own retries off), our retries with
exponential backoff on 429, 5xx and timeouts, the caps (calls, tokens, cost, wall time), usage and cost accounting,
and the response cache and transcript it feeds.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pytest_speedrun.agents.llm.cache import ResponseCache
from pytest_speedrun.agents.llm.settings import LLMSettings
from pytest_speedrun.agents.llm.transcript import Transcript
from pytest_speedrun.agents.scaffolds import LimitReached
from pytest_speedrun.errors import AgentError


@dataclass
class Usage:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cache_hits: int = 0  # calls answered from the response cache (their tokens and cost are counted all the same)
    replayed: int = 0  # calls answered from an interrupted attempt's transcript (--speedrun-resume), counted alike
    retries: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost_usd"] = round(self.cost_usd, 6)
        return data

    def since(self, before: dict[str, Any]) -> dict[str, Any]:
        now = self.to_json()
        return {k: (round(now[k] - before[k], 6) if k == "cost_usd" else now[k] - before[k])
                for k in ("calls", "input_tokens", "output_tokens", "cost_usd")}


@dataclass(frozen=True)
class Reply:
    content: str
    input_tokens: int
    output_tokens: int
    finish_reason: str
    cached: bool


_RETRY_STATUS = {408, 409, 429}


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class LLMClient:
    """One item's channel to the model. `complete()` raises LimitReached when a cap is reached (the search
    then ends cleanly) and AgentError when the endpoint fails for good."""

    def __init__(self, settings: LLMSettings, agent_name: str, artifacts: Path, seed: int,
                 wall_s: float | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, replies: dict[str, dict] | None = None) -> None:
        self.s, self.agent_name, self.seed = settings, agent_name, seed
        self.replies = dict(replies or {})  # answers an interrupted attempt got, by cache key (replay.py)
        self.credit_s = 0.0  # wall time the interrupted attempt spent on what is replayed: it counts to the cap
        self.usage = Usage()
        self.transcript = Transcript(artifacts)
        cache_root = settings.cache_dir / "llm" if settings.cache_dir is not None else None
        self.cache = ResponseCache(cache_root, settings.llm_cache)
        self.wall_s, self.sleep, self.clock = wall_s, sleep, clock
        self.started = clock()
        self._samples: dict[str, int] = {}
        self._client: Any = None

    # caps ------------------------------------------------------------------------------------------------

    def check_limits(self, wall_only: bool = False) -> None:
        """Raise LimitReached when a cap is reached. `wall_only` before a node run: an edit already paid for
        is still run, unless the wall-time cap has passed."""
        s, u = self.s, self.usage
        elapsed = self.clock() - self.started + self.credit_s
        if self.wall_s is not None and elapsed >= self.wall_s:
            self._stop(f"{elapsed:.0f} s of search reached the agent's wall-time cap "
                       f"--speedrun-agent-timeout={self.wall_s:g}")
        if wall_only:
            return
        if s.max_llm_calls is not None and u.calls >= s.max_llm_calls:
            self._stop(f"{u.calls} LLM calls reached the cap --speedrun-max-llm-calls={s.max_llm_calls}")
        if s.max_llm_tokens is not None and u.input_tokens + u.output_tokens >= s.max_llm_tokens:
            self._stop(f"{u.input_tokens + u.output_tokens} tokens reached the cap "
                       f"--speedrun-max-llm-tokens={s.max_llm_tokens}")
        if s.max_cost is not None and u.cost_usd >= s.max_cost:
            self._stop(f"cost ${u.cost_usd:.4f} reached the cap --speedrun-max-cost={s.max_cost:g}")

    def _stop(self, reason: str) -> None:
        self.transcript.event("limit", reason=reason, usage=self.usage.to_json())
        self.transcript.text(f"=== search stopped: {reason} ===")
        raise LimitReached(reason)

    # requests --------------------------------------------------------------------------------------------

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.s.input_usd_per_mtok + output_tokens * self.s.output_usd_per_mtok) / 1e6

    def complete(self, messages: list[dict], purpose: str, key_messages: list[dict] | None = None) -> str:
        """The model's answer to `messages` (counted, cached, logged). `key_messages`: the same messages as the
        cache key should see them (the scaffold masks measured figures that vary between runs)."""
        self.check_limits()
        params = self.s.sampling()
        keyed = messages if key_messages is None else key_messages
        identity = json.dumps({"m": keyed, "p": params}, sort_keys=True)
        sample = self._samples.get(identity, 0)  # identical requests within an item are distinct samples
        self._samples[identity] = sample + 1
        key = ResponseCache.key(self.s.model, self.s.endpoint(), keyed, params, self.seed, sample)
        call = self.usage.calls + 1
        self.transcript.event("request", call=call, purpose=purpose, model=self.s.model, base_url=self.s.endpoint(),
                              params=params, cache_key=key, messages=messages)
        hit = self.cache.get(key)
        replayed = self.replies.pop(key, None) if hit is None else None
        started = time.monotonic()
        if hit is not None or replayed is not None:
            got = hit if hit is not None else replayed
            reply = Reply(got["content"], int(got["input_tokens"]), int(got["output_tokens"]),
                          str(got.get("finish_reason") or ""), cached=True)
            if replayed is not None:
                self.usage.replayed += 1
                self.credit_s += float(replayed.get("latency_s") or 0.0)
        else:
            reply = self._request(messages, params, call)
            self.cache.put(key, {"content": reply.content, "input_tokens": reply.input_tokens,
                                 "output_tokens": reply.output_tokens, "finish_reason": reply.finish_reason,
                                 "model": self.s.model})
        cost = self.cost(reply.input_tokens, reply.output_tokens)
        u = self.usage
        u.calls += 1
        u.input_tokens += reply.input_tokens
        u.output_tokens += reply.output_tokens
        u.cost_usd += cost
        u.cache_hits += reply.cached and replayed is None
        self.transcript.event("response", call=call, cached=reply.cached, content=reply.content,
                              finish_reason=reply.finish_reason, input_tokens=reply.input_tokens,
                              output_tokens=reply.output_tokens, cost_usd=round(cost, 6),
                              latency_s=round(time.monotonic() - started, 3))
        self.transcript.exchange(call, purpose, messages, reply, cost)
        if reply.finish_reason == "length":
            return reply.content + "\n\n(The answer was cut off at the output-token limit.)"
        return reply.content

    def _openai(self) -> Any:
        if self._client is None:
            self._client = make_openai_client(self.s)
        return self._client

    def _request(self, messages: list[dict], params: dict, call: int) -> Reply:
        import openai

        attempts = self.s.llm_retries + 1
        last = ""
        for attempt in range(attempts):
            retry_after = 0.0
            try:
                response = self._openai().chat.completions.create(model=self.s.model, messages=messages, **params)
                return _reply(response, messages)
            except openai.APIStatusError as exc:
                status = exc.status_code
                body = exc.body if isinstance(exc.body, Mapping) else {}
                last = f"HTTP {status}: {_one_line(body.get('message') or exc.message)}"
                if status not in _RETRY_STATUS and status < 500:
                    self.transcript.event("error", call=call, error=last)
                    raise AgentError(f"{self.agent_name}: request to {self.s.endpoint()} failed: {last}") from None
                retry_after = _retry_after(exc.response.headers.get("retry-after"))
            except openai.APIConnectionError as exc:  # includes timeouts
                last = f"{type(exc).__name__}: {_one_line(str(exc))}"
            except openai.OpenAIError as exc:
                last = f"{type(exc).__name__}: {_one_line(str(exc))}"
                self.transcript.event("error", call=call, error=last)
                raise AgentError(f"{self.agent_name}: request to {self.s.endpoint()} failed: {last}") from None
            if attempt + 1 == attempts:
                break
            delay = min(60.0, max(self.s.llm_retry_base_s * 2 ** attempt, retry_after))
            self.usage.retries += 1
            self.transcript.event("retry", call=call, attempt=attempt + 1, error=last, delay_s=delay)
            self.transcript.text(f"--- call {call}: {last}; retrying in {delay:.2f} s ---")
            self.sleep(delay)
        self.transcript.event("error", call=call, error=last, attempts=attempts)
        raise AgentError(f"{self.agent_name}: request to {self.s.endpoint()} failed after {attempts} attempt(s): "
                         f"{last}")


def _retry_after(value: str | None) -> float:
    try:
        return min(60.0, max(0.0, float(value))) if value else 0.0
    except ValueError:
        return 0.0


def _reply(response: Any, messages: list[dict]) -> Reply:
    choice = response.choices[0] if response.choices else None
    content = (choice.message.content if choice is not None else None) or ""
    usage = response.usage
    if usage is not None and usage.prompt_tokens is not None:
        inp, out = int(usage.prompt_tokens), int(usage.completion_tokens or 0)
    else:  # a server that reports no usage: estimate (4 characters a token) so caps still hold
        inp = sum(len(str(m["content"])) for m in messages) // 4
        out = len(content) // 4
    return Reply(content, inp, out, str(choice.finish_reason if choice is not None else "") or "", cached=False)


def make_openai_client(s: LLMSettings) -> Any:
    try:
        import openai
    except ImportError:
        raise AgentError("the openai package is not installed: pip install 'pytest-speedrun[llm]'") from None
    key = os.environ.get(s.api_key_env, "") if s.api_key_env else ""
    return openai.OpenAI(api_key=key or "EMPTY", base_url=s.endpoint(), timeout=s.llm_request_timeout_s,
                         max_retries=0, default_headers=s.extra_headers or None)
