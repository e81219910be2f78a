"""The coding-agent presets (claude-code, codex, aider, gemini-cli), each run against a fake executable of the
tool's name on PATH (tests/fake_coding_tool.py) that records its argv, environment, working directory and
prompt, and edits the script."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from pytest_speedrun.agents import AgentContext, AgentResources, make_agent
from pytest_speedrun.agents.coding import PRESETS, coding_prompt, credential_paths
from pytest_speedrun.agents.registry import available_agents
from pytest_speedrun.errors import AgentError, UsageError
from pytest_speedrun.execution import runner
from pytest_speedrun.execution.resources import pid_alive

FAKE = Path(__file__).with_name("fake_coding_tool.py")
EXECUTABLES = {"claude-code": "claude", "codex": "codex", "aider": "aider", "gemini-cli": "gemini"}
KEYS = {"claude-code": "ANTHROPIC_API_KEY", "codex": "CODEX_API_KEY", "aider": "ANTHROPIC_API_KEY",
        "gemini-cli": "GEMINI_API_KEY"}
MODELS = {"claude-code": "claude-sonnet-4-5", "codex": "gpt-5-codex", "aider": "sonnet", "gemini-cli": "gemini-2.5-pro"}
# Every credential variable the presets look at, and the variables that move the tools' home directories.
ALL_KEYS = sorted({var for cls in PRESETS.values() for var, _ in cls(None).credentials({}) if "/" not in var} |
                  {"OPENAI_API_KEY", "CLAUDE_CONFIG_DIR", "CODEX_HOME", "GEMINI_CLI_HOME"})


def expected_argv(preset: str, model: str, workspace: Path) -> list[str]:
    """The flags each tool's --help documents for a non-interactive run (versions in coding.py)."""
    policy = str(Path(sys.modules[PRESETS[preset].__module__].__file__).with_name("gemini_policy.toml"))
    return {
        "claude-code": ["-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits",
                        "--allowedTools", "Bash,Edit,Write,Read,Glob,Grep,NotebookEdit", "--disallowedTools",
                        "WebFetch,WebSearch", "--no-session-persistence", "--model", model],
        "codex": ["exec", "--json", "--skip-git-repo-check", "--ephemeral",
                  "--dangerously-bypass-approvals-and-sandbox", "-c", 'web_search="disabled"', "-C", str(workspace),
                  "-m", model, "-"],
        "aider": ["--message-file", "/dev/stdin", "--file", "train_gpt2.py", "--yes-always", "--no-git", "--no-pretty",
                  "--no-stream", "--no-fancy-input", "--no-check-update", "--no-show-release-notes", "--no-analytics",
                  "--no-show-model-warnings", "--no-detect-urls", "--disable-playwright",
                  "--no-suggest-shell-commands", "--chat-history-file", "/dev/null", "--input-history-file",
                  "/dev/null", "--model", model],
        "gemini-cli": ["--approval-mode", "yolo", "--output-format", "stream-json", "--skip-trust", "--policy", policy,
                       "-m", model, "-p", "Carry out the task above: edit train_gpt2.py in place."],
    }[preset]


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The four fake CLIs first on PATH, a fresh HOME, no credentials in the environment; returns the path of
    the record the fake writes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    body = f"#!{sys.executable}\n" + FAKE.read_text()
    for exe in EXECUTABLES.values():
        (bin_dir / exe).write_text(body)
        (bin_dir / exe).chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(home))
    for var in ALL_KEYS:
        monkeypatch.delenv(var, raising=False)
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_TOOL_RECORD", str(record))
    return record


def solve(preset: str, ctx: AgentContext, monkeypatch: pytest.MonkeyPatch, record: Path, model: str | None = None):
    monkeypatch.setenv(KEYS[preset], f"sk-test-{preset}")
    agent = make_agent(f"{preset}:{model}" if model else preset)
    agent.preflight()
    solution = agent.solve(ctx)
    return solution, json.loads(record.read_text())


@pytest.mark.parametrize("preset", list(EXECUTABLES))
def test_preset_runs_the_tool_non_interactively_with_the_documented_flags(preset, ctx, tools, monkeypatch) -> None:
    solution, seen = solve(preset, ctx, monkeypatch, tools, MODELS[preset])
    assert seen["tool"] == EXECUTABLES[preset]
    assert seen["argv"] == expected_argv(preset, MODELS[preset], ctx.workspace)
    assert Path(seen["cwd"]) == ctx.workspace
    assert solution.script == ctx.start_script and solution.script.endswith(f"# edited by {seen['tool']}\n")


@pytest.mark.parametrize("preset", list(EXECUTABLES))
def test_prompt_holds_the_task_contract_hints_and_target(preset, ctx, tools, monkeypatch) -> None:
    start = ctx.start_script
    _, seen = solve(preset, ctx, monkeypatch, tools)
    prompt = seen["prompt"]
    assert prompt == (ctx.artifacts_dir / "agent-prompt.md").read_text()
    assert "reaches a validation loss of at most 2 in the" in prompt  # the target (task.md)
    assert "NANOGPT_TRAIN_FILES" in prompt and "NANOGPT_VAL_TOKENS" in prompt and "4096 here" in prompt  # contract
    assert "## Hints" in prompt and "x = faster(x)" in prompt  # the item's level-1 hint
    assert "Make it faster." not in prompt  # level 2 is not this item's
    assert "Edit `train_gpt2.py` in place" in prompt and start.rstrip("\n") in prompt
    assert "cannot run the script here" in prompt  # no lease and data were given to this agent


@pytest.mark.parametrize("preset", list(EXECUTABLES))
def test_api_key_reaches_the_agent_and_never_a_training_run(preset, ctx, tools, monkeypatch) -> None:
    _, seen = solve(preset, ctx, monkeypatch, tools)
    var = KEYS[preset]
    assert seen["env"][var] == f"sk-test-{preset}"
    assert seen["env"]["HOME"] == os.environ["HOME"]  # an OAuth sign-in under ~ reaches the tool
    run_env = runner.contract_env(train_glob="t", val_glob="v", val_tokens=1, task_env={}, seed=0, threads=1,
                                  base=seen["env"])
    assert var not in run_env


def test_no_credential_variable_of_any_preset_passes_into_training_runs() -> None:
    variables = {var for cls in PRESETS.values() for var, _ in cls(None).credentials({}) if "/" not in var}
    assert {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "CODEX_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY",
            "GOOGLE_API_KEY", "OPENROUTER_API_KEY"} <= variables
    base = {"PATH": "/bin", "HOME": "/home/u", **{v: "secret" for v in variables}}
    env = runner.contract_env(train_glob="t", val_glob="v", val_tokens=1, task_env={}, seed=0, threads=1, base=base)
    assert not variables & set(env)
    assert not any(v in runner.PASSTHROUGH or v.startswith(runner.PASSTHROUGH_PREFIXES) for v in variables)


@pytest.mark.parametrize(("preset", "usage"), [
    ("claude-code", {"calls": 3, "input_tokens": 1120, "output_tokens": 50, "cache_read_input_tokens": 1000,
                     "cost_usd": 0.0123}),
    ("codex", {"turns": 1, "input_tokens": 1200, "cached_input_tokens": 1000, "output_tokens": 80}),
    ("gemini-cli", {"input_tokens": 1500, "output_tokens": 70, "cached_input_tokens": 300, "tool_calls": 2}),
    ("aider", {"calls": 2, "input_tokens": 2300 + 12000 + 1200, "output_tokens": 460, "cost_usd": 0.0474}),
])
def test_usage_and_cost_come_from_the_tools_transcript(preset, usage, ctx, tools, monkeypatch) -> None:
    solution, _ = solve(preset, ctx, monkeypatch, tools)
    version = {"claude-code": "2.1.197 (Claude Code)", "codex": "codex-cli 0.171.0", "gemini-cli": "0.61.0",
               "aider": "aider 0.86.2"}[preset]
    assert solution.usage == {"tool": preset, "tool_version": version, **usage}


@pytest.mark.parametrize("preset", list(EXECUTABLES))
def test_transcript_is_saved_as_agent_log(preset, ctx, tools, monkeypatch) -> None:
    solution, _ = solve(preset, ctx, monkeypatch, tools)
    log = (ctx.artifacts_dir / "agent.log").read_text()
    assert log == solution.transcript and log.strip()
    if preset != "aider":  # the JSON event streams end with their usage event
        assert json.loads(log.strip().splitlines()[-1])["type"] in ("result", "turn.completed")


def test_wall_time_cap_kills_the_tool_and_keeps_what_it_spent(ctx, tools, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_TOOL_SLEEP", "60")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    ctx = AgentContext(**{**ctx.__dict__, "timeout_s": 1.5})
    with pytest.raises(AgentError, match=r"claude-code: agent command timed out after 1.5 s") as info:
        make_agent("claude-code").solve(ctx)
    assert info.value.usage["calls"] == 1 and info.value.usage["input_tokens"] == 700
    assert "cost_usd" not in info.value.usage  # no result event: the tool never reported a cost
    assert not pid_alive(int(Path(str(tools) + ".child").read_text()))


@pytest.mark.parametrize(("preset", "said"), [("claude-code", "Not logged in · Please run /login"),
                                               ("codex", "401 Unauthorized"), ("gemini-cli", "quota exceeded")])
def test_a_failing_tool_is_an_agent_error_with_its_own_message(preset, said, ctx, tools, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_TOOL_EXIT", "1")
    with pytest.raises(AgentError, match=f"exited with code 1: .*; {EXECUTABLES[preset]} said: {said}"):
        solve(preset, ctx, monkeypatch, tools)


@pytest.mark.parametrize(("preset", "oauth"), [("claude-code", ".claude/.credentials.json"),
                                               ("codex", ".codex/auth.json"),
                                               ("gemini-cli", ".gemini/oauth_creds.json"),
                                               ("aider", ".aider/oauth-keys.env")])
def test_preflight_accepts_an_oauth_sign_in_and_names_what_is_missing(preset, oauth, tools) -> None:
    agent = make_agent(preset)
    with pytest.raises(AgentError, match=f"{preset}: no credentials: none of .*{KEYS[preset]}.* is set and none "
                                         f"of .*{oauth}.* exists"):
        agent.preflight()
    creds = Path(os.environ["HOME"]) / oauth
    creds.parent.mkdir(parents=True)
    creds.write_text("{}")
    agent.preflight()


def test_preflight_names_the_tool_and_how_to_install_it(tools, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(AgentError, match=r"`claude` is not on PATH; install it \(npm install -g "
                                         r"@anthropic-ai/claude-code\)"):
        make_agent("claude-code").preflight()


def test_aider_checks_the_key_of_the_models_provider(tools, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    with pytest.raises(AgentError, match="none of OPENAI_API_KEY is set"):
        make_agent("aider:gpt-4o").preflight()
    make_agent("aider:anthropic/claude-sonnet-4-5").preflight()
    make_agent("aider:ollama_chat/llama3").preflight()  # a provider it does not know: aider finds out


def test_the_items_lease_reaches_the_agent_process(ctx, tools, monkeypatch) -> None:
    core = sorted(os.sched_getaffinity(0))[0]
    lease = {"CUDA_VISIBLE_DEVICES": "3", "OMP_NUM_THREADS": "1", "NANOGPT_TRAIN_FILES": "/data/train_*.bin",
             "NANOGPT_VAL_FILES": "/data/val_*.bin", "NANOGPT_VAL_TOKENS": "4096"}
    ctx = AgentContext(**{**ctx.__dict__, "resources": AgentResources(env=lease, cores=(core,))})
    _, seen = solve("claude-code", ctx, monkeypatch, tools)
    assert {k: seen["env"][k] for k in lease} == lease
    assert seen["affinity"] == [core]
    assert "You may run the script to try an idea: `python train_gpt2.py`" in seen["prompt"]
    assert "(GPUs 3, 1 CPU cores)" in seen["prompt"]


def test_preset_defaults_do_not_override_the_users_environment(ctx, tools, monkeypatch) -> None:
    _, seen = solve("claude-code", ctx, monkeypatch, tools)
    assert seen["env"]["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "0")
    _, seen = solve("claude-code", ctx, monkeypatch, tools)
    assert seen["env"]["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "0"


def test_model_after_the_colon_names_the_agent_and_goes_into_its_config(tools) -> None:
    agent = make_agent("claude-code:claude-opus-4-6")
    assert agent.name == "claude-code:claude-opus-4-6"
    assert agent.config["model"] == "claude-opus-4-6" and agent.config["version"] == "2.1.197 (Claude Code)"
    assert make_agent("codex").config["model"] == ""  # the tool's own default
    with pytest.raises(UsageError, match="needs a model name after the colon"):
        make_agent("gemini-cli:")


def test_registry_lists_the_presets_after_the_offline_agents() -> None:
    names = available_agents()
    assert names[:7] == ["baseline", "command:<shell command>", "oracle", "aider", "claude-code", "codex",
                         "gemini-cli"]


def test_prompt_without_hints_asks_for_a_plan(ctx) -> None:
    ctx = AgentContext(**{**ctx.__dict__, "hints": None, "hint_levels": ()})
    prompt = coding_prompt(ctx)
    assert "## Plan first" in prompt and "## Hints" not in prompt


def test_claude_code_preset_through_the_plugin_keeps_its_key_from_the_run(run, tools, tmp_path, monkeypatch,
                                                                          pytester) -> None:
    run_env = tmp_path / "run-env.json"
    monkeypatch.setenv("FAKE_TOOL_RUN_ENV", str(run_env))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-e2e")
    # Scoring is not under test here: on a busy machine the fake record's untimed work can look implausible.
    result = run("--speedrun-agent=claude-code", "-k", "mini01", "--speedrun-allow-suspicious")
    result.assert_outcomes(passed=1)
    seen = json.loads(tools.read_text())
    assert seen["env"]["ANTHROPIC_API_KEY"] == "sk-test-e2e"
    assert "ANTHROPIC_API_KEY" not in json.loads(run_env.read_text())  # the timed run's environment
    (record,) = [json.loads(line) for line in (pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()]
    assert record["agent"] == "claude-code" and record["usage"]["cost_usd"] == 0.0123


def test_credential_paths_name_every_tools_sign_in(tools) -> None:
    home = Path(os.environ["HOME"])
    paths = set(credential_paths())
    assert {home / ".claude/.credentials.json", home / ".codex/auth.json",
                             home / ".gemini/oauth_creds.json", home / ".aider"} <= paths
