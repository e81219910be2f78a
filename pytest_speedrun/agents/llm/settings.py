"""An LLM agent's settings and where they come from: the presets (`claude`, `openai`, `deepseek`, `local`), the
`LLMSettings` they resolve to, and reading the `[tool.pytest-speedrun.agents.<name>]` tables of pyproject.toml, the
ini keys and the CLI options over them (lowest precedence first: preset, table, ini, the model after the colon,
CLI), each value checked by its converter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_speedrun.agents.scaffolds import SCAFFOLDS, SearchParams
from pytest_speedrun.errors import UsageError
from pytest_speedrun.files import tomllib


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
