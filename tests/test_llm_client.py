"""LLM agents through the real openai client against a scripted server on loopback: answers, reflections,
retries, caps, cache, transcripts, settings and presets. Node runs are faked (`FakeRuns`); the plugin tests run
real ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_stub import ChatServer, FakeRuns, Reply, answer, error, make_context, prompt_script, set_work
from pytest_speedrun.agents.llm import ConfigSource, LLMClient, llm_factories, make_llm_agent, resolve_settings
from pytest_speedrun.errors import AgentError, UsageError


@pytest.fixture
def chat_server():
    with ChatServer() as server:
        yield server


def local(server: ChatServer, tmp_path: Path, **cli):
    source = ConfigSource(cli={"base_url": server.url, "model": "stub-model", "llm_retries": 2, **cli},
                          tables={"local": {"llm_retry_base_s": 0.0}}, cache_dir=tmp_path / "cache")
    return make_llm_agent("local", source=source)


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE"


# --- answers ---------------------------------------------------------------------------------------------


def test_single_applies_a_whole_file_answer(chat_server: ChatServer, tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    new = ctx.start_script.replace("WORK_S = 0.6", "WORK_S = 0.2")
    chat_server.push(answer(f"Sleep less.\n```python\n{new}```\n"))
    solution = local(chat_server, tmp_path).solve(ctx)
    assert solution.script == new and solution.node is None
    (request,) = chat_server.chat_requests()
    assert request["model"] == "stub-model" and [m["role"] for m in request["messages"]] == ["system", "user"]
    assert prompt_script(request) == ctx.start_script


def test_single_applies_search_replace_blocks_after_stripping_reasoning(chat_server: ChatServer,
                                                                        tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    decoy = block("WORK_S = 0.6", "WORK_S = 9.0")
    chat_server.push(answer(f"<think>{decoy}</think>\n" + block("WORK_S = 0.6", "WORK_S = 0.25")
                            + "\n\n" + block("N = 10", "N = 5")))
    script = local(chat_server, tmp_path).solve(ctx).script
    assert "WORK_S = 0.25\n" in script and "N = 5\n" in script and "9.0" not in script


def test_a_malformed_edit_goes_back_to_the_model_with_the_reason(chat_server: ChatServer, tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    bad = block("WORK_S = 0.7", "WORK_S = 0.1")
    chat_server.push(answer(bad), answer(block("WORK_S = 0.6", "WORK_S = 0.1")))
    solution = local(chat_server, tmp_path).solve(ctx)
    assert "WORK_S = 0.1\n" in solution.script
    first, second = chat_server.chat_requests()
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert second["messages"][2]["content"] == bad
    assert "does not match the current script" in second["messages"][3]["content"]
    assert "retry 1 of 3" in second["messages"][3]["content"]
    assert solution.usage["calls"] == 2


def test_edits_that_never_apply_stop_at_the_reflection_limit(chat_server: ChatServer, tmp_path: Path) -> None:
    chat_server.push(*[answer("no idea")] * 3)
    with pytest.raises(AgentError, match=r"no usable edit after 2 reflection\(s\): the answer holds neither") as err:
        local(chat_server, tmp_path, reflections=2).solve(make_context(tmp_path))
    assert len(chat_server.chat_requests()) == 3
    assert err.value.usage["calls"] == 3  # what the failed agent spent travels with its error


def test_the_prompt_carries_the_contract_and_hints_or_asks_for_a_plan(chat_server: ChatServer,
                                                                      tmp_path: Path) -> None:
    for hints, name in (((1, 2), "a"), ((), "b")):
        chat_server.push(answer(block("WORK_S = 0.6", "WORK_S = 0.5")))
        local(chat_server, tmp_path).solve(make_context(tmp_path, hints, name=name))
    with_hints, without = (r["messages"][1]["content"] for r in chat_server.chat_requests())
    for text in (with_hints, without):
        for needle in ("NANOGPT_TRAIN_FILES", "NANOGPT_VAL_FILES", "NANOGPT_VAL_TOKENS", "(4096 here)",
                       "step:N/N val_loss:X train_time:Yms", "`python train_gpt2.py`", "at most 2"):
            assert needle in text, needle
    assert "x = faster(x)" in with_hints and "Make it faster." in with_hints and "Plan first" not in with_hints
    assert "Plan first" in without and "write a short plan" in without and "faster(x)" not in without


# --- retries and errors ------------------------------------------------------------------------------------


def test_429_and_503_are_retried_with_exponential_backoff(chat_server: ChatServer, tmp_path: Path) -> None:
    settings = resolve_settings("local", source=ConfigSource(
        cli={"base_url": chat_server.url, "model": "m"}, tables={"local": {"llm_retry_base_s": 0.1}}))
    delays: list[float] = []
    client = LLMClient(settings, "local", tmp_path, seed=0, sleep=delays.append)
    chat_server.push(error(429, "slow down"), error(429, headers={"retry-after": "0.5"}), error(503),
                     answer("hello"))
    assert client.complete([{"role": "user", "content": "hi"}], "test") == "hello"
    assert delays == [0.1, 0.5, 0.4]  # base·2^k, or the server's Retry-After when it asks for longer
    assert (client.usage.calls, client.usage.retries) == (1, 3)
    events = [json.loads(ln) for ln in (tmp_path / "llm.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events] == ["request", "retry", "retry", "retry", "response"]
    assert "HTTP 429: slow down" in events[1]["error"]


def test_a_timeout_is_retried(chat_server: ChatServer, tmp_path: Path) -> None:
    settings = resolve_settings("local", source=ConfigSource(
        cli={"base_url": chat_server.url, "model": "m"}, tables={"local": {"llm_request_timeout_s": 0.3}}))
    client = LLMClient(settings, "local", tmp_path, seed=0, sleep=lambda s: None)
    chat_server.push(Reply(content="late", delay_s=2.0), answer("on time"))
    assert client.complete([{"role": "user", "content": "hi"}], "test") == "on time"
    retry = next(json.loads(ln) for ln in (tmp_path / "llm.jsonl").read_text().splitlines() if '"retry"' in ln)
    assert retry["error"].startswith("APITimeoutError")


def test_5xx_until_the_retries_run_out_is_an_agent_error(chat_server: ChatServer, tmp_path: Path) -> None:
    chat_server.push(*[error(500, "boom")] * 3)
    with pytest.raises(AgentError, match=r"failed after 3 attempt\(s\): HTTP 500: boom"):
        local(chat_server, tmp_path).solve(make_context(tmp_path))
    assert len(chat_server.chat_requests()) == 3


def test_a_client_error_is_not_retried(chat_server: ChatServer, tmp_path: Path) -> None:
    chat_server.push(error(401, "invalid api key"))
    with pytest.raises(AgentError, match="HTTP 401: invalid api key"):
        local(chat_server, tmp_path).solve(make_context(tmp_path))
    assert len(chat_server.chat_requests()) == 1


# --- caps, usage, cache, transcripts ----------------------------------------------------------------------


def test_the_cost_cap_ends_the_search_and_keeps_the_best_node(chat_server: ChatServer, tmp_path: Path) -> None:
    works = iter([0.5, 0.3, 0.4, 0.1, 0.1])
    chat_server.responder = lambda req: answer(set_work(prompt_script(req), next(works)))
    runs = FakeRuns()
    ctx = make_context(tmp_path, execute=runs)
    source = ConfigSource(cli={"base_url": chat_server.url, "model": "m", "scaffold": "flat", "budget": 10,
                               "max_cost": 0.004},
                          tables={"local": {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 1.0}})
    solution = make_llm_agent("local", source=source).solve(ctx)
    # each call costs (1000 + 500) tokens × $1/M = $0.0015: the 4th call would start at $0.0045 >= $0.004
    assert len(runs.results) == 3 and len(chat_server.chat_requests()) == 3
    assert solution.node == 1 and "WORK_S = 0.3\n" in solution.script
    assert solution.usage["calls"] == 3 and solution.usage["cost_usd"] == pytest.approx(0.0045)
    assert "--speedrun-max-cost=0.004" in solution.usage["stopped"]
    tree = json.loads((ctx.artifacts_dir / "search.json").read_text())
    assert tree["best"] == 1 and "cost" in tree["stopped"] and len(tree["nodes"]) == 3


def test_usage_is_counted_per_node_and_per_item(chat_server: ChatServer, tmp_path: Path) -> None:
    chat_server.push(answer("nothing useful", 100, 10), answer(block("WORK_S = 0.6", "WORK_S = 0.5"), 200, 20),
                     answer(block("WORK_S = 0.6", "WORK_S = 0.4"), 300, 30))
    runs = FakeRuns()
    solution = local(chat_server, tmp_path, scaffold="flat", budget=2).solve(make_context(tmp_path, execute=runs))
    assert {k: solution.usage[k] for k in ("calls", "input_tokens", "output_tokens")} == \
           {"calls": 3, "input_tokens": 600, "output_tokens": 60}
    first, second = solution.usage["nodes"]
    assert (first["index"], first["calls"], first["input_tokens"], first["output_tokens"]) == (0, 2, 300, 30)
    assert (second["index"], second["calls"], second["input_tokens"]) == (1, 1, 300)


def test_a_cache_replay_makes_no_requests_and_reproduces_the_scripts(chat_server: ChatServer,
                                                                     tmp_path: Path) -> None:
    works = iter([0.5, 0.45, 0.3, 0.35])
    chat_server.responder = lambda req: answer(set_work(prompt_script(req), next(works)))
    first, second = FakeRuns(), FakeRuns()
    recorded = local(chat_server, tmp_path, scaffold="forest", n0=2, branch=1, budget=4,
                     llm_cache="readwrite").solve(make_context(tmp_path, execute=first, name="a"))
    requests = len(chat_server.chat_requests())
    chat_server.responder = None  # any request now fails with a 500
    replayed = local(chat_server, tmp_path, scaffold="forest", n0=2, branch=1, budget=4,
                     llm_cache="read").solve(make_context(tmp_path, execute=second, name="b"))
    assert requests == 4 and len(chat_server.requests) == requests
    assert second.scripts == first.scripts and replayed.script == recorded.script
    assert replayed.usage["cache_hits"] == 4 and replayed.usage["calls"] == 4


def test_identical_requests_are_distinct_samples_in_the_cache(chat_server: ChatServer, tmp_path: Path) -> None:
    settings = resolve_settings("local", source=ConfigSource(
        cli={"base_url": chat_server.url, "model": "m", "llm_cache": "readwrite"}, cache_dir=tmp_path / "c"))
    chat_server.push(answer("one"), answer("two"))
    messages = [{"role": "user", "content": "same"}]
    live = LLMClient(settings, "local", tmp_path / "a", seed=0)
    (tmp_path / "a").mkdir()
    assert [live.complete(messages, "x"), live.complete(messages, "x")] == ["one", "two"]
    (tmp_path / "b").mkdir()
    replay = LLMClient(settings, "local", tmp_path / "b", seed=0)
    assert [replay.complete(messages, "x"), replay.complete(messages, "x")] == ["one", "two"]
    assert len(chat_server.requests) == 2


def test_every_request_and_response_is_in_the_transcript(chat_server: ChatServer, tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    chat_server.push(answer("bad"), answer(block("WORK_S = 0.6", "WORK_S = 0.5")))
    solution = local(chat_server, tmp_path).solve(ctx)
    events = [json.loads(ln) for ln in (ctx.artifacts_dir / "llm.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events] == ["request", "response", "request", "response"]
    assert events[2]["messages"][2] == {"role": "assistant", "content": "bad"}
    assert events[3]["content"].startswith("<<<<<<< SEARCH") and events[3]["cached"] is False
    log = (ctx.artifacts_dir / "agent.log").read_text()
    assert log == solution.transcript and "=== call 2 · step 1: draft, reflection 1 ===" in log


# --- presets, settings, preflight --------------------------------------------------------------------------


def test_a_missing_api_key_fails_preflight_with_one_line_naming_the_variable(monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(AgentError) as info:
        make_llm_agent("claude").preflight()
    assert "ANTHROPIC_API_KEY" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    make_llm_agent("claude").preflight()
    with pytest.raises(AgentError, match="MY_KEY is not set"):
        make_llm_agent("claude", source=ConfigSource(cli={"api_key_env": "MY_KEY"})).preflight()


def test_openai_sends_max_completion_tokens_headers_and_the_key(chat_server: ChatServer, tmp_path: Path,
                                                                monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", chat_server.url)  # honoured as the openai client does
    source = ConfigSource(cli={"max_tokens": 123, "reasoning_effort": "high"},
                          tables={"openai": {"extra_headers": {"X-Speedrun": "yes"}}})
    chat_server.push(answer(block("WORK_S = 0.6", "WORK_S = 0.5")))
    make_llm_agent("openai", source=source).solve(make_context(tmp_path))
    (request,) = chat_server.requests
    assert request["json"]["model"] == "o3-mini" and request["json"]["max_completion_tokens"] == 123
    assert request["json"]["reasoning_effort"] == "high" and "max_tokens" not in request["json"]
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == "Bearer sk-test" and headers["x-speedrun"] == "yes"


def test_claude_sends_max_tokens_to_its_endpoint(chat_server: ChatServer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    chat_server.push(answer(block("WORK_S = 0.6", "WORK_S = 0.5")))
    make_llm_agent("claude", source=ConfigSource(cli={"base_url": chat_server.url})).solve(make_context(tmp_path))
    (request,) = chat_server.chat_requests()
    assert request["model"].startswith("claude-") and request["max_tokens"] == 16000


def test_local_without_a_model_uses_the_first_served_model(chat_server: ChatServer, tmp_path: Path) -> None:
    agent = make_llm_agent("local", source=ConfigSource(cli={"base_url": chat_server.url}))
    agent.preflight()
    assert agent.config["model"] == "stub-model"
    chat_server.push(answer(block("WORK_S = 0.6", "WORK_S = 0.5")))
    agent.solve(make_context(tmp_path))
    assert chat_server.chat_requests()[0]["model"] == "stub-model"


def test_settings_layer_preset_table_ini_model_arg_and_cli() -> None:
    tables = {"claude": {"model": "from-table", "temperature": 0.3, "budget": 7, "scaffold": "aide"}}
    ini = {"speedrun_agent_claude_temperature": "0.5", "speedrun_budget": "9"}.get
    s = resolve_settings("claude", "from-arg", ConfigSource(tables=tables, ini=ini, cli={"budget": 11}))
    assert (s.model, s.temperature, s.budget, s.scaffold, s.input_usd_per_mtok) == ("from-arg", 0.5, 11, "aide", 3.0)
    s = resolve_settings("claude", None, ConfigSource(tables=tables, ini=ini))
    assert (s.model, s.budget) == ("from-table", 9)


def test_a_bad_setting_is_a_usage_error_naming_where_it_is() -> None:
    with pytest.raises(UsageError, match=r"pyproject.toml \[tool.pytest-speedrun.agents.claude\] temperature = "
                                         r"'hot': expected a number"):
        resolve_settings("claude", source=ConfigSource(tables={"claude": {"temperature": "hot"}}))
    with pytest.raises(UsageError, match=r"--speedrun-scaffold=beam: 'beam' is not one of single, flat, tree"):
        resolve_settings("claude", source=ConfigSource(cli={"scaffold": "beam"}))
    with pytest.raises(UsageError, match=r"ini speedrun_p_debug = '2': must be <= 1"):
        resolve_settings("claude", source=ConfigSource(ini={"speedrun_p_debug": "2"}.get))
    with pytest.raises(UsageError, match=r"unknown key 'temp'"):
        resolve_settings("claude", source=ConfigSource(tables={"claude": {"temp": 1}}))


def test_a_custom_table_defines_an_agent_on_a_preset(chat_server: ChatServer) -> None:
    source = ConfigSource(tables={"qwen": {"preset": "local", "base_url": chat_server.url, "model": "qwen-coder"}})
    agent = llm_factories(source)["qwen"](None)
    assert agent.name == "qwen" and agent.config["model"] == "qwen-coder"
    assert agent.config["base_url"] == chat_server.url


def test_config_holds_model_scaffold_and_the_parameters_that_matter(chat_server: ChatServer) -> None:
    def config(**cli):
        return make_llm_agent("local", source=ConfigSource(cli={"model": "m", **cli})).config

    single, aide = config(), config(scaffold="aide")
    assert (single["model"], single["scaffold"], aide["scaffold"]) == ("m", "single", "aide")
    assert aide["params"]["budget"] == 20 and aide["params"]["p_debug"] == 0.5 and "budget" not in single["params"]
    assert config(budget=5) == single and config(scaffold="aide", budget=5) != aide


def test_prompt_templates_can_be_overridden_from_a_directory(chat_server: ChatServer, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "system.md").write_text("Be terse.\n")
    chat_server.push(answer(block("WORK_S = 0.6", "WORK_S = 0.5")))
    local(chat_server, tmp_path, prompts=str(prompts)).solve(make_context(tmp_path))
    assert chat_server.chat_requests()[0]["messages"][0]["content"] == "Be terse.\n"
    (prompts / "task.md").write_text("$script_text\n")
    with pytest.raises(UsageError, match=r"task.md: unknown placeholder \$script_text"):
        local(chat_server, tmp_path, prompts=str(prompts))
