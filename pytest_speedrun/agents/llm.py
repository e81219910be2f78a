"""LLM agents: a chat model behind any OpenAI-compatible endpoint, driven by a search scaffold.

Presets `claude`, `openai`, `deepseek` and `local` give the endpoint, the API-key variable, a default model and
its prices. Settings come, lowest precedence first, from the preset, the `[tool.pytest-speedrun.agents.<name>]`
table of the rootdir's pyproject.toml, ini keys (`speedrun_agent_<name>_<key>` per agent, `speedrun_<key>` for
search settings), the model after the colon (`--speedrun-agent=claude:claude-opus-4-6`), and CLI options.

Per item, `LLMClient` owns the conversation channel: the openai client (its own retries off), our retries with
exponential backoff on 429, 5xx and timeouts, the caps (calls, tokens, cost, wall time), usage and cost
accounting, the JSONL transcript (`llm.jsonl`) and readable log (`agent.log`) in the item's artifacts, and the
response cache (`<cache dir>/llm/`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from pytest_speedrun.agents.base import AgentContext, Solution
from pytest_speedrun.agents.scaffolds import SCAFFOLDS, LimitReached, Prompts, Search, SearchParams
from pytest_speedrun.errors import AgentError, UsageError
from pytest_speedrun.pipeline.replay import llm_replies

# --- presets and settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    base_url: str | None  # None: the openai client's own default, which honours OPENAI_BASE_URL
    api_key_env: str  # "" when the endpoint needs no key
    model: str  # "" (local): the first model the server lists
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    max_tokens: int | None = None
    token_param: str = "max_tokens"  # OpenAI's reasoning models take max_completion_tokens instead


# Prices in USD per million tokens, as published when this was written; set your own in the agent's table.
PRESETS: dict[str, Preset] = {
    "claude": Preset("https://api.anthropic.com/v1/", "ANTHROPIC_API_KEY", "claude-sonnet-4-5", 3.0, 15.0,
                     max_tokens=16000),
    "openai": Preset(None, "OPENAI_API_KEY", "o3-mini", 1.10, 4.40, token_param="max_completion_tokens"),
    "deepseek": Preset("https://api.deepseek.com", "DEEPSEEK_API_KEY", "deepseek-reasoner", 0.56, 1.68),
    "local": Preset("http://127.0.0.1:8000/v1", "", "", 0.0, 0.0),
}

CACHE_MODES = ("off", "read", "write", "readwrite")
# Settings of the endpoint and model: per agent (table, `speedrun_agent_<name>_<key>` ini keys, CLI).
AGENT_KEYS = ("model", "base_url", "api_key_env", "temperature", "max_tokens", "reasoning_effort", "extra_headers",
              "input_usd_per_mtok", "output_usd_per_mtok")
# Settings of the search, its limits and plumbing: tables, `speedrun_<key>` ini keys, CLI `--speedrun-<key>`.
SEARCH_KEYS = ("scaffold", "budget", "n0", "branch", "p_debug", "max_debug_depth", "reflections", "max_cost",
               "max_llm_calls", "max_llm_tokens", "llm_retries", "llm_retry_base_s", "llm_request_timeout_s",
               "llm_cache", "prompts")


@dataclass(frozen=True)
class LLMSettings:
    preset: str
    model: str
    base_url: str | None
    api_key_env: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    temperature: float | None = None
    max_tokens: int | None = None
    token_param: str = "max_tokens"
    reasoning_effort: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    scaffold: str = "single"
    budget: int = 20
    n0: int = 3
    branch: int = 3
    p_debug: float = 0.5
    max_debug_depth: int = 5
    reflections: int = 3
    max_cost: float | None = None
    max_llm_calls: int | None = None
    max_llm_tokens: int | None = None
    llm_retries: int = 5
    llm_retry_base_s: float = 1.0
    llm_request_timeout_s: float = 600.0
    llm_cache: str = "off"
    prompts: Path | None = None
    cache_dir: Path | None = None

    @property
    def search(self) -> SearchParams:
        return SearchParams(scaffold=self.scaffold, budget=self.budget, n0=self.n0, branch=self.branch,
                            p_debug=self.p_debug, max_debug_depth=self.max_debug_depth, reflections=self.reflections)

    def endpoint(self) -> str:
        if self.base_url:
            return self.base_url
        return os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"

    def sampling(self) -> dict[str, Any]:
        """The request parameters besides model and messages (part of the cache key)."""
        params: dict[str, Any] = {}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params[self.token_param] = self.max_tokens
        if self.reasoning_effort:
            params["reasoning_effort"] = self.reasoning_effort
        return params


def _number(kind: type, low: float | None = None, high: float | None = None, strict: bool = False):
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        if isinstance(value, str):
            value = value.strip()
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected {'an integer' if kind is int else 'a number'}, got {value!r}") from None
        if kind is int and isinstance(value, float) and value != number:
            raise ValueError(f"expected an integer, got {value!r}")
        if low is not None and (number <= low if strict else number < low):
            raise ValueError(f"must be {'>' if strict else '>='} {low:g}")
        if high is not None and number > high:
            raise ValueError(f"must be <= {high:g}")
        return number
    return convert


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value.strip()


def _choice(options: tuple[str, ...]):
    def convert(value: Any) -> str:
        text = _text(value).lower()
        if text not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return text
    return convert


def _headers(value: Any) -> dict[str, str]:
    """A TOML table, or lines (ini) / a comma-separated string (CLI) of `Name: value`."""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    lines = value if isinstance(value, list) else str(value).replace(",", "\n").splitlines()
    headers = {}
    for line in (str(x).strip() for x in lines):
        if not line:
            continue
        name, sep, val = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"header {line!r} is not of the form 'Name: value'")
        headers[name.strip()] = val.strip()
    return headers


def _optional(convert):
    def wrapped(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        return convert(value)
    return wrapped


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "model": _text, "base_url": _text, "api_key_env": _text,
    "temperature": _optional(_number(float, 0.0)), "max_tokens": _optional(_number(int, 0, strict=True)),
    "reasoning_effort": _optional(_text), "extra_headers": _headers,
    "input_usd_per_mtok": _number(float, 0.0), "output_usd_per_mtok": _number(float, 0.0),
    "scaffold": _choice(SCAFFOLDS), "budget": _number(int, 1), "n0": _number(int, 1), "branch": _number(int, 1),
    "p_debug": _number(float, 0.0, 1.0), "max_debug_depth": _number(int, 0), "reflections": _number(int, 0),
    "max_cost": _optional(_number(float, 0.0, strict=True)), "max_llm_calls": _optional(_number(int, 1)),
    "max_llm_tokens": _optional(_number(int, 1)), "llm_retries": _number(int, 0),
    "llm_retry_base_s": _number(float, 0.0), "llm_request_timeout_s": _number(float, 0.0, strict=True),
    "llm_cache": _choice(CACHE_MODES), "prompts": _optional(lambda v: Path(_text(v)).expanduser()),
}


@dataclass(frozen=True)
class ConfigSource:
    """Where an LLM agent's settings come from besides its preset (the plugin fills this from pytest).

    `tables`: the `[tool.pytest-speedrun.agents]` tables by agent name; `ini(key)`: an ini value or None;
    `cli`: option values given on the command line, by setting key; `model_arg`: the text after `name:`."""

    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tables_path: str = "pyproject.toml"
    ini: Callable[[str], Any] = lambda key: None
    cli: Mapping[str, Any] = field(default_factory=dict)
    cache_dir: Path | None = None
    base_dir: Path | None = None  # relative prompt directories are taken from here


def read_agent_tables(pyproject: Path) -> dict[str, dict[str, Any]]:
    """The `[tool.pytest-speedrun.agents.<name>]` tables of a pyproject.toml ({} if it has none)."""
    if not pyproject.is_file():
        return {}
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{pyproject}: cannot read it: {exc}") from None
    agents = data.get("tool", {}).get("pytest-speedrun", {}).get("agents", {})
    if not isinstance(agents, dict) or not all(isinstance(v, dict) for v in agents.values()):
        raise UsageError(f"{pyproject}: [tool.pytest-speedrun.agents] must hold one table per agent name")
    return agents


def resolve_settings(name: str, model_arg: str | None = None, source: ConfigSource | None = None) -> LLMSettings:
    """The settings of agent `name` (a preset, or a table naming one with `preset = ...`). UsageError names the
    file, ini key or option of the first bad value."""
    source = source or ConfigSource()
    table = dict(source.tables.get(name, {}))
    preset_name = _text(table.pop("preset", name)) if name not in PRESETS else name
    if preset_name not in PRESETS:
        raise UsageError(f"{source.tables_path} [tool.pytest-speedrun.agents.{name}] preset = {preset_name!r}: "
                         f"not one of {', '.join(PRESETS)}")
    p = PRESETS[preset_name]
    values: dict[str, Any] = {"preset": preset_name, **asdict(p)}
    unknown = sorted(set(table) - set(AGENT_KEYS) - set(SEARCH_KEYS))
    if unknown:
        raise UsageError(f"{source.tables_path} [tool.pytest-speedrun.agents.{name}]: unknown key {unknown[0]!r}; "
                         f"known: preset, {', '.join(AGENT_KEYS + SEARCH_KEYS)}")
    table_label = f"{source.tables_path} [tool.pytest-speedrun.agents.{name}]"
    layers: list[tuple[Callable[[str, Any], str], dict[str, Any]]] = [
        (lambda key, raw: f"{table_label} {key} = {raw!r}", table)]
    ini_names = {key: f"speedrun_agent_{name}_{key}" for key in AGENT_KEYS}
    ini_names.update({key: f"speedrun_{key}" for key in SEARCH_KEYS})
    ini_values = {key: source.ini(ini) for key, ini in ini_names.items()}
    layers.append((lambda key, raw: f"ini {ini_names[key]} = {raw!r}",
                   {k: v for k, v in ini_values.items() if v is not None}))
    if model_arg:
        layers.append((lambda key, raw: f"--speedrun-agent={name}:{raw}", {"model": model_arg}))
    layers.append((lambda key, raw: f"--speedrun-{key.replace('_', '-')}={raw}",
                   {k: v for k, v in source.cli.items() if v is not None}))
    for label, layer in layers:
        for key, raw in layer.items():
            try:
                values[key] = CONVERTERS[key](raw)
            except ValueError as exc:
                raise UsageError(f"{label(key, raw)}: {exc}") from None
    if values.get("prompts") is not None and source.base_dir is not None:
        values["prompts"] = source.base_dir / values["prompts"]
    values["cache_dir"] = source.cache_dir
    return LLMSettings(**values)


# --- usage, caps, cache, transcript -----------------------------------------------------------------------


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


class ResponseCache:
    """Responses on disk, one JSON file per key under `<cache dir>/llm/`. Modes: off, read (replay hits; misses
    go to the endpoint and are not stored), write (always ask the endpoint, store), readwrite (replay hits,
    store misses)."""

    def __init__(self, root: Path | None, mode: str) -> None:
        self.root, self.mode = root, mode if root is not None else "off"

    @staticmethod
    def key(model: str, base_url: str, messages: list[dict], params: dict, seed: int, sample: int) -> str:
        ident = {"model": model, "base_url": base_url.rstrip("/"), "messages": messages, "params": params,
                 "seed": seed, "sample": sample}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.mode not in ("read", "readwrite"):
            return None
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, data: dict) -> None:
        if self.mode not in ("write", "readwrite"):
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)


class Transcript:
    """Every request, response, retry and stop as JSONL (`llm.jsonl`), and a readable `agent.log`."""

    def __init__(self, directory: Path) -> None:
        self.jsonl = directory / "llm.jsonl"
        self.log = directory / "agent.log"
        self._system_shown: str | None = None

    def event(self, kind: str, **data: Any) -> None:
        record = {"type": kind, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data}
        with open(self.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")

    def text(self, line: str) -> None:
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(line if line.endswith("\n") else line + "\n")

    def exchange(self, call: int, purpose: str, messages: list[dict], reply: Reply, cost: float) -> None:
        parts = [f"=== call {call} · {purpose} ==="]
        system = next((m["content"] for m in messages if m["role"] == "system"), None)
        if system is not None and system != self._system_shown:
            parts += ["--- system ---", system]
            self._system_shown = system
        parts += [f"--- {messages[-1]['role']} ---", messages[-1]["content"]]
        source = "cache" if reply.cached else "endpoint"
        parts += [f"--- assistant ({reply.input_tokens} in / {reply.output_tokens} out tokens, ${cost:.4f}, "
                  f"{source}, finish {reply.finish_reason}) ---", reply.content, ""]
        self.text("\n".join(parts))


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


# --- the agent --------------------------------------------------------------------------------------------


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
