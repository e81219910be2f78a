"""Coding-agent presets: Claude Code, Codex CLI, aider and Gemini CLI as `command:` agents.

`--speedrun-agent=claude-code`, `codex`, `aider` or `gemini-cli`, with an optional model after a colon
(`claude-code:claude-sonnet-4-5`). Each preset is a CommandAgent (command.py: workspace as cwd, the SPEEDRUN_*
variables, its own process group, the agent timeout, agent.log, the sandbox) whose invocation is the tool's
documented non-interactive mode. The flags were read from `--help` of these versions, installed from their
registries, and the behaviour noted below was checked against the real CLIs:

    claude-code  Claude Code 2.1.197 (npm @anthropic-ai/claude-code)
    codex        Codex CLI 0.171.0   (npm @openai/codex)
    gemini-cli   Gemini CLI 0.61.0   (npm @google/gemini-cli)
    aider        aider 0.86.2        (PyPI aider-chat)

The prompt is rendered from the LLM agents' templates (prompts/task.md with hints.md or no_hints.md: the task,
the contract, the hints, the target val_loss) plus prompts/coding.md, saved as `agent-prompt.md` in the item's
artifacts and given to the tool on stdin. The tool's transcript (its JSON event stream where it has one) is
`agent.log`; tokens and cost are parsed from it into the item's usage (`cost_usd` only where the tool reports
a cost: Claude Code's `total_cost_usd`, aider's "Cost: ... session" line).

Credentials: the tool's process gets the user's environment (its API key, HOME, so an OAuth sign-in under
~/.claude, ~/.codex, ~/.gemini works) and, with `--speedrun-sandbox=bwrap`, its state directory read-write.
Training runs by the harness get an allow-list environment without any of these keys (runner.PASSTHROUGH).

Permissions: Claude Code refuses `--dangerously-skip-permissions` and `--permission-mode bypassPermissions`
when run as root (exit 1, unless IS_SANDBOX=1), so the preset never uses them: it pre-approves the tools it
needs (`--permission-mode acceptEdits --allowedTools ...`), which runs edits and shell commands as root and
non-root alike. Codex (`--dangerously-bypass-approvals-and-sandbox`) and Gemini CLI (`--approval-mode yolo`)
accept their bypass as root; aider has none to refuse (`--yes-always`, and it runs no shell commands here).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import Any

from pytest_speedrun.agents.base import AgentContext, Solution
from pytest_speedrun.agents.command import CommandAgent, Invocation
from pytest_speedrun.agents.scaffolds import Prompts
from pytest_speedrun.errors import AgentError, UsageError

PROMPT_FILE = "agent-prompt.md"  # in the item's artifacts, given to the tool on stdin
SCRIPT_NAME = "train_gpt2.py"  # harness.SCRIPT_NAME (not imported: the harness imports the agents)
_GEMINI_POLICY = Path(__file__).with_name("gemini_policy.toml")
_CODING_TEMPLATE = Path(__file__).with_name("prompts") / "coding.md"


# --- the prompt ---------------------------------------------------------------------------------------------


def _duration(ms: float) -> str:
    s = ms / 1000
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _launch(ctx: AgentContext) -> str:
    n = ctx.task.launch.nproc_per_node
    return f"python {SCRIPT_NAME}" if n == 1 else f"torchrun --standalone --nproc_per_node={n} {SCRIPT_NAME}"


def _run_note(ctx: AgentContext) -> str:
    """Whether the agent can try its ideas: only when the harness gave it the item's lease and data."""
    res = ctx.resources
    if res is None or "NANOGPT_TRAIN_FILES" not in res.env:
        return ("The training data is not available in your session, so you cannot run the script here; make "
                "the change you expect to work.")
    gpus = res.env.get("CUDA_VISIBLE_DEVICES", "")
    share = ", ".join(x for x in (f"GPUs {gpus}" if gpus else "no GPU",
                                  f"{len(res.cores)} CPU cores" if res.cores else "") if x)
    return (f"You may run the script to try an idea: `{_launch(ctx)}` in this directory finds the data through "
            f"the variables already set in your environment, and your processes are limited to this item's share "
            f"of the machine ({share}). A full run takes about {_duration(ctx.task.start.train_time_ms)} on the "
            "reference hardware; keep trial runs short (a copy with fewer iterations, say), since they count "
            "against your cap.")


def coding_prompt(ctx: AgentContext, prompts: Prompts | None = None) -> str:
    """The task prompt of the LLM agents (same templates and values as scaffolds.Search), with the coding
    agent's instruction (prompts/coding.md) in place of a search step."""
    prompts = prompts or Prompts()
    task = ctx.task
    hints = (prompts.render("hints", hints=ctx.hints.strip()) if ctx.hints
             else prompts.render("no_hints", target_val_loss=f"{task.target_val_loss:g}"))
    instruction = Template(_CODING_TEMPLATE.read_text(encoding="utf-8")).substitute(
        script_name=SCRIPT_NAME, agent_timeout=_duration(ctx.timeout_s * 1000), run_note=_run_note(ctx),
        script=ctx.start_script.rstrip("\n"))
    return prompts.render(
        "task", target_val_loss=f"{task.target_val_loss:g}", start_record=task.start.record,
        start_time=_duration(task.start.train_time_ms), val_tokens=task.launch.env.get("NANOGPT_VAL_TOKENS", "set"),
        launch=_launch(ctx), timeout=_duration(task.launch.timeout_s * 1000), hints=hints, history="None yet.",
        instruction=instruction)


# --- transcripts --------------------------------------------------------------------------------------------


def _events(transcript: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL transcript (other lines, e.g. warnings on stderr, are skipped)."""
    events = []
    for line in transcript.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                events.append(value)
    return events


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


# --- the presets --------------------------------------------------------------------------------------------


class CodingAgent(CommandAgent):
    """A coding-agent CLI run non-interactively in the item's workspace (see the module docstring)."""

    preset = ""  # the --speedrun-agent name
    executable = ""
    install = ""  # how to install the tool
    tested = ""  # the version whose flags this preset uses
    key_vars: tuple[str, ...] = ()  # environment variables that carry credentials (any one suffices)

    def __init__(self, model: str | None = None) -> None:
        if model is not None and not model.strip():
            raise UsageError(f"--speedrun-agent={self.preset}: needs a model name after the colon, e.g. "
                             f"{self.preset}:{self.example_model}")
        self.model = model.strip() if model else None
        super().__init__(shlex.join(self.argv(None)), needs_network=True, writable=self.state_paths(os.environ))
        self.name = self.preset + (f":{self.model}" if self.model else "")
        self._version: str | None = None

    example_model = ""

    # per tool ---------------------------------------------------------------------------------------------

    def argv(self, ctx: AgentContext | None) -> list[str]:
        """The tool's command line (without the prompt, which goes on stdin)."""
        raise NotImplementedError

    def credential_files(self, env: Mapping[str, str]) -> tuple[Path, ...]:
        """Files holding a signed-in user's credentials (or the tool's key configuration); never read here."""
        return ()

    def state_paths(self, env: Mapping[str, str]) -> tuple[Path, ...]:
        """What the tool writes outside the workspace (read-write in the sandbox)."""
        return ()

    def env_defaults(self) -> dict[str, str]:
        """Variables the preset sets for the tool unless the user's environment sets them."""
        return {}

    def usage(self, transcript: str) -> dict[str, Any]:
        """Tokens, calls and cost, as far as the tool reports them in its transcript."""
        return {}

    def tool_error(self, transcript: str) -> str:
        """The tool's own error message in its transcript, if any."""
        return ""

    # shared -----------------------------------------------------------------------------------------------

    def version(self) -> str:
        """The first line of `<tool> --version` ("" if it does not run); part of the resume key."""
        if self._version is None:
            exe = shutil.which(self.executable)
            self._version = ""
            if exe is not None:
                try:
                    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60,
                                         stdin=subprocess.DEVNULL).stdout
                    self._version = next((ln.strip() for ln in out.splitlines() if ln.strip()), "")
                except (OSError, subprocess.TimeoutExpired):
                    pass
        return self._version

    @property
    def config(self) -> dict[str, Any]:
        """What makes runs of this agent the same experiment (the resume key) and what reports show."""
        return {"model": self.model or "", "scaffold": "", "tool": self.preset, "version": self.version(),
                "params": {"argv": self.argv(None), "prompt": "task.md+coding.md"}}

    def credentials(self, env: Mapping[str, str] | None = None) -> list[tuple[str, bool]]:
        """(variable or file, present) for every credential source this tool reads; values are never read."""
        env = os.environ if env is None else env
        found = [(var, bool(env.get(var, "").strip())) for var in self.key_vars]
        return found + [(str(path), path.is_file()) for path in self.credential_files(env)]

    def preflight(self) -> None:
        """Fail before any work when the tool is not installed or has no credentials (one line, no values)."""
        if shutil.which(self.executable) is None:
            raise AgentError(f"{self.name}: `{self.executable}` is not on PATH; install it ({self.install})")
        sources = self.credentials()
        if sources and not any(present for _, present in sources):
            variables = [n for n, _ in sources if "/" not in n]
            files = [n for n, _ in sources if "/" in n]
            raise AgentError(f"{self.name}: no credentials: none of {', '.join(variables)} is set"
                             + (f" and none of {', '.join(files)} exists" if files else "")
                             + "; set the API key or sign in with the tool (README: Coding-agent presets)")

    def invocation(self, ctx: AgentContext) -> Invocation:
        prompt = ctx.artifacts_dir / PROMPT_FILE
        prompt.write_text(coding_prompt(ctx), encoding="utf-8")
        env = {k: v for k, v in self.env_defaults().items() if k not in os.environ}
        return Invocation(shlex.join(self.argv(ctx)), env=env, stdin=prompt)

    def solve(self, ctx: AgentContext) -> Solution:
        log = ctx.artifacts_dir / "agent.log"
        try:
            solution = super().solve(ctx)
        except AgentError as exc:
            transcript = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
            said = self.tool_error(transcript)
            raise AgentError(f"{self.name}: {exc}" + (f"; {self.executable} said: {said[:300]}" if said else ""),
                             usage=self._usage(transcript)) from None
        return Solution(script=solution.script, transcript=solution.transcript,
                        usage=self._usage(solution.transcript or ""))

    def _usage(self, transcript: str) -> dict[str, Any]:
        return {"tool": self.preset, "tool_version": self.version(), **self.usage(transcript)}


class ClaudeCode(CodingAgent):
    """`claude -p`, prompt on stdin, stream-json transcript (its `result` event carries total_cost_usd)."""

    preset, executable, tested = "claude-code", "claude", "2.1.197"
    install = "npm install -g @anthropic-ai/claude-code"
    example_model = "claude-sonnet-4-5"
    key_vars = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK",
                "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY")
    # Edits, shell commands and file reads without a prompt; everything else (web tools included) is denied.
    ALLOWED = "Bash,Edit,Write,Read,Glob,Grep,NotebookEdit"
    DENIED = "WebFetch,WebSearch"

    def argv(self, ctx: AgentContext | None) -> list[str]:
        return ["claude", "-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits",
                "--allowedTools", self.ALLOWED, "--disallowedTools", self.DENIED, "--no-session-persistence",
                *(["--model", self.model] if self.model else [])]

    @staticmethod
    def _home(env: Mapping[str, str]) -> Path:
        return Path(env.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")

    def credential_files(self, env: Mapping[str, str]) -> tuple[Path, ...]:
        return (self._home(env) / ".credentials.json",)

    def state_paths(self, env: Mapping[str, str]) -> tuple[Path, ...]:
        return (self._home(env), Path.home() / ".claude.json")

    def env_defaults(self) -> dict[str, str]:
        # No auto-update mid-benchmark (the version is part of the experiment), no telemetry from compute nodes.
        return {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}

    def usage(self, transcript: str) -> dict[str, Any]:
        events = _events(transcript)
        result = next((e for e in reversed(events) if e.get("type") == "result"), None)
        if result is not None:
            u = result.get("usage") or {}
            data: dict[str, Any] = {
                "calls": _int(result.get("num_turns")),
                "input_tokens": sum(_int(u.get(k)) for k in ("input_tokens", "cache_creation_input_tokens",
                                                             "cache_read_input_tokens")),
                "output_tokens": _int(u.get("output_tokens")),
                "cache_read_input_tokens": _int(u.get("cache_read_input_tokens")),
            }
            if isinstance(result.get("total_cost_usd"), (int, float)):
                data["cost_usd"] = round(float(result["total_cost_usd"]), 6)
            return data
        # No result event (timeout, crash): the API responses seen so far, once per message id; no cost.
        seen: dict[str, dict] = {}
        for e in events:
            msg = e.get("message") if e.get("type") == "assistant" else None
            if isinstance(msg, dict) and isinstance(msg.get("usage"), dict):
                seen[str(msg.get("id"))] = msg["usage"]
        if not seen:
            return {}
        return {"calls": len(seen),
                "input_tokens": sum(_int(u.get(k)) for u in seen.values() for k in
                                    ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")),
                "output_tokens": sum(_int(u.get("output_tokens")) for u in seen.values())}

    def tool_error(self, transcript: str) -> str:
        result = next((e for e in reversed(_events(transcript)) if e.get("type") == "result"), None)
        if result is not None and result.get("is_error"):
            return str(result.get("result") or result.get("subtype") or "")
        return ""


class Codex(CodingAgent):
    """`codex exec`, prompt on stdin (`-`), JSONL events (`--json`); turn.completed events carry token usage,
    no cost."""

    preset, executable, tested = "codex", "codex", "0.171.0"
    install = "npm install -g @openai/codex"
    example_model = "gpt-5.2-codex"
    key_vars = ("CODEX_API_KEY", "OPENAI_API_KEY", "CODEX_ACCESS_TOKEN")

    def argv(self, ctx: AgentContext | None) -> list[str]:
        # Codex's own sandbox would block the GPU/compile-cache writes a trial run needs; isolation is the
        # harness's (--speedrun-sandbox). web_search="disabled" removes the web search tool.
        return ["codex", "exec", "--json", "--skip-git-repo-check", "--ephemeral",
                "--dangerously-bypass-approvals-and-sandbox", "-c", 'web_search="disabled"',
                *(["-C", str(ctx.workspace)] if ctx is not None else []),
                *(["-m", self.model] if self.model else []), "-"]

    @staticmethod
    def _home(env: Mapping[str, str]) -> Path:
        return Path(env.get("CODEX_HOME") or Path.home() / ".codex")

    def credential_files(self, env: Mapping[str, str]) -> tuple[Path, ...]:
        return (self._home(env) / "auth.json",)

    def state_paths(self, env: Mapping[str, str]) -> tuple[Path, ...]:
        return (self._home(env),)

    def usage(self, transcript: str) -> dict[str, Any]:
        turns = [e.get("usage") or {} for e in _events(transcript) if e.get("type") == "turn.completed"]
        if not turns:
            return {}
        return {"turns": len(turns), "input_tokens": sum(_int(u.get("input_tokens")) for u in turns),
                "cached_input_tokens": sum(_int(u.get("cached_input_tokens")) for u in turns),
                "output_tokens": sum(_int(u.get("output_tokens")) for u in turns)}

    def tool_error(self, transcript: str) -> str:
        for e in reversed(_events(transcript)):
            if e.get("type") == "turn.failed":
                return str((e.get("error") or {}).get("message") or "turn failed")
            if e.get("type") == "error":
                return str(e.get("message") or "")
        return ""


class GeminiCli(CodingAgent):
    """`gemini -p`, prompt on stdin (the CLI puts stdin before the -p text), stream-json transcript whose
    `result` event carries token stats, no cost."""

    preset, executable, tested = "gemini-cli", "gemini", "0.61.0"
    install = "npm install -g @google/gemini-cli"
    example_model = "gemini-2.5-pro"
    key_vars = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_GCA")
    INSTRUCTION = "Carry out the task above: edit train_gpt2.py in place."

    @staticmethod
    def _home(env: Mapping[str, str]) -> Path:
        return Path(env.get("GEMINI_CLI_HOME") or Path.home()) / ".gemini"

    def argv(self, ctx: AgentContext | None) -> list[str]:
        # --policy replaces the user's policy directory in the user tier: keep it when there is one.
        user_policies = self._home(os.environ) / "policies"
        return ["gemini", "--approval-mode", "yolo", "--output-format", "stream-json", "--skip-trust",
                "--policy", str(_GEMINI_POLICY), *(["--policy", str(user_policies)] if user_policies.is_dir() else []),
                *(["-m", self.model] if self.model else []), "-p", self.INSTRUCTION]

    def credential_files(self, env: Mapping[str, str]) -> tuple[Path, ...]:
        home = self._home(env)
        return (home / "oauth_creds.json", home / ".env")

    def state_paths(self, env: Mapping[str, str]) -> tuple[Path, ...]:
        return (self._home(env),)

    def usage(self, transcript: str) -> dict[str, Any]:
        result = next((e for e in reversed(_events(transcript)) if e.get("type") == "result"), None)
        stats = (result or {}).get("stats")
        if not isinstance(stats, dict):
            return {}
        return {"input_tokens": _int(stats.get("input_tokens")), "output_tokens": _int(stats.get("output_tokens")),
                "cached_input_tokens": _int(stats.get("cached")), "tool_calls": _int(stats.get("tool_calls"))}

    def tool_error(self, transcript: str) -> str:
        for e in reversed(_events(transcript)):
            if e.get("type") == "error" or isinstance(e.get("error"), dict):
                err = e.get("error") if isinstance(e.get("error"), dict) else e
                return str(err.get("message") or "")
        return ""


# aider reads a model's key from the provider's variable (litellm); without --model it picks a default from the
# first of these that is set (aider/onboarding.py), and with none it starts an interactive OpenRouter sign-in.
_AIDER_PROVIDERS = (
    (("openrouter/",), "OPENROUTER_API_KEY"),
    (("anthropic/", "claude", "sonnet", "opus", "haiku"), "ANTHROPIC_API_KEY"),
    (("deepseek",), "DEEPSEEK_API_KEY"),
    (("openai/", "gpt-", "o1", "o3", "o4", "4o", "chatgpt"), "OPENAI_API_KEY"),
    (("gemini",), "GEMINI_API_KEY"),
    (("vertex_ai/",), "VERTEXAI_PROJECT"),
    (("xai/", "grok"), "XAI_API_KEY"),
    (("groq/",), "GROQ_API_KEY"),
    (("mistral/",), "MISTRAL_API_KEY"),
)
_AIDER_TOKENS = re.compile(r"^Tokens: ([\d.]+)(k?) sent(?:, ([\d.]+)(k?) cache write)?(?:, ([\d.]+)(k?) cache hit)?"
                           r", ([\d.]+)(k?) received\.", re.M)
_AIDER_COST = re.compile(r"Cost: \$([\d.]+) message, \$([\d.]+) session\.")


def _tokens(number: str | None, k: str | None) -> int:
    return round(float(number) * (1000 if k else 1)) if number else 0


class Aider(CodingAgent):
    """`aider --message-file` (one message, its edits applied, then exit), prompt on stdin; plain-text transcript
    whose "Tokens: ..." and "Cost: ... session." lines give usage and cost (as rounded as aider prints them)."""

    preset, executable, tested = "aider", "aider", "0.86.2"
    install = "pip install aider-chat (or pipx install aider-chat)"
    example_model = "sonnet"

    def argv(self, ctx: AgentContext | None) -> list[str]:
        # No git, no history files, no browser, no URL scraping (aider's only web access), no shell commands;
        # --no-stream so litellm reports exact usage and cost.
        return ["aider", "--message-file", "/dev/stdin", "--file", SCRIPT_NAME, "--yes-always", "--no-git",
                "--no-pretty", "--no-stream", "--no-fancy-input", "--no-check-update", "--no-show-release-notes",
                "--no-analytics", "--no-show-model-warnings", "--no-detect-urls", "--disable-playwright",
                "--no-suggest-shell-commands", "--chat-history-file", "/dev/null", "--input-history-file",
                "/dev/null", *(["--model", self.model] if self.model else [])]

    @property
    def key_vars(self) -> tuple[str, ...]:  # type: ignore[override]
        if self.model is None:
            return tuple(var for _, var in _AIDER_PROVIDERS[:6])
        model = self.model.lower()
        return next(((var,) for prefixes, var in _AIDER_PROVIDERS if model.startswith(prefixes)), ())

    def credential_files(self, env: Mapping[str, str]) -> tuple[Path, ...]:
        if self.model is not None and not self.key_vars:
            return ()  # a provider we do not know (a local server, say): aider finds out
        home = Path.home()
        return (home / ".aider" / "oauth-keys.env", home / ".env", home / ".aider.conf.yml")

    def state_paths(self, env: Mapping[str, str]) -> tuple[Path, ...]:
        return (Path.home() / ".aider",)

    def env_defaults(self) -> dict[str, str]:
        # litellm otherwise fetches its model price list from the internet at start (offline nodes: a retry
        # and an error line); the copy it ships prices the models as well.
        return {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}

    def usage(self, transcript: str) -> dict[str, Any]:
        tokens = _AIDER_TOKENS.findall(transcript)
        if not tokens:
            return {}
        data: dict[str, Any] = {
            "calls": len(tokens),
            "input_tokens": sum(_tokens(t[0], t[1]) + _tokens(t[2], t[3]) + _tokens(t[4], t[5]) for t in tokens),
            "output_tokens": sum(_tokens(t[6], t[7]) for t in tokens),
        }
        costs = _AIDER_COST.findall(transcript)
        if costs:
            data["cost_usd"] = float(costs[-1][1])
        return data


PRESETS: dict[str, type[CodingAgent]] = {cls.preset: cls for cls in (ClaudeCode, Codex, Aider, GeminiCli)}


def make_coding_agent(name: str, model: str | None = None) -> CodingAgent:
    return PRESETS[name](model)


def credential_paths(env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """Every file or directory where the presets' tools keep a sign-in or their state (~/.claude, ~/.codex,
    ~/.gemini, ~/.aider, ...), existing or not: what a training run has no business reading (a sandbox can
    mask them; training runs inherit HOME)."""
    env = os.environ if env is None else env
    paths = {path for cls in PRESETS.values() for agent in (cls(None),)
             for path in (*agent.state_paths(env), *agent.credential_files(env))}
    return tuple(sorted(paths, key=str))
