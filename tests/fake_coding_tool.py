"""A stand-in for the coding-agent CLIs (claude, codex, gemini, aider), installed under each tool's name.

It behaves like the tool as far as the presets rely on it: answers `--version`, reads the prompt (stdin, or
aider's `--message-file`), edits train_gpt2.py in its working directory, and prints a transcript in the tool's
own format with usage and cost. The transcripts are shaped on the real CLIs' output (claude 2.1.197 and aider
0.86.2 were run against loopback API stand-ins; codex's and gemini's event shapes are from their sources).

It records what it was given (argv, environment, working directory, CPU affinity, prompt) as JSON in
$FAKE_TOOL_RECORD. Knobs: FAKE_TOOL_EXIT (exit code after an error transcript), FAKE_TOOL_SLEEP (seconds to
sleep after a partial transcript, with a child process that must die with it; its pid goes to
$FAKE_TOOL_RECORD.child), FAKE_TOOL_RUN_ENV (append code to the script that dumps the training run's
environment to that path).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

TOOL = Path(sys.argv[0]).name
VERSIONS = {"claude": "2.1.197 (Claude Code)", "codex": "codex-cli 0.171.0", "gemini": "0.61.0",
            "aider": "aider 0.86.2"}


def arg_after(flag: str) -> str | None:
    args = sys.argv[1:]
    return args[args.index(flag) + 1] if flag in args else None


def emit(*events: dict) -> None:
    for event in events:
        print(json.dumps(event), flush=True)


def partial() -> None:
    """What the tool has printed by the time it is killed."""
    if TOOL == "claude":
        emit({"type": "system", "subtype": "init", "cwd": os.getcwd(), "tools": ["Bash", "Edit", "Read"]},
             {"type": "assistant", "message": {"id": "msg_1", "role": "assistant", "content": [],
                                               "usage": {"input_tokens": 700, "output_tokens": 30,
                                                         "cache_creation_input_tokens": 0,
                                                         "cache_read_input_tokens": 0}}})
    elif TOOL == "codex":
        emit({"type": "thread.started", "thread_id": "t1"}, {"type": "turn.started"})
    elif TOOL == "gemini":
        emit({"type": "init", "session_id": "s1", "model": "gemini-2.5-pro"})
    else:
        print("Aider v0.86.2", flush=True)


def failure() -> None:
    if TOOL == "claude":
        emit({"type": "result", "subtype": "success", "is_error": True, "num_turns": 1,
              "result": "Not logged in · Please run /login", "total_cost_usd": 0,
              "usage": {"input_tokens": 0, "output_tokens": 0}})
    elif TOOL == "codex":
        emit({"type": "turn.failed", "error": {"message": "401 Unauthorized"}})
    elif TOOL == "gemini":
        emit({"type": "result", "status": "error", "error": {"type": "Error", "message": "quota exceeded"},
              "stats": {"input_tokens": 0, "output_tokens": 0}})
    else:
        print("litellm.AuthenticationError: invalid x-api-key", flush=True)


def success() -> None:
    if TOOL == "claude":
        emit({"type": "assistant", "message": {"id": "msg_2", "role": "assistant",
                                               "content": [{"type": "text", "text": "done"}],
                                               "usage": {"input_tokens": 100, "output_tokens": 50}}},
             {"type": "result", "subtype": "success", "is_error": False, "num_turns": 3, "result": "done",
              "total_cost_usd": 0.0123, "usage": {"input_tokens": 100, "cache_creation_input_tokens": 20,
                                                  "cache_read_input_tokens": 1000, "output_tokens": 50}})
    elif TOOL == "codex":
        emit({"type": "item.completed", "item": {"id": "item_0", "type": "agent_message", "text": "done"}},
             {"type": "turn.completed", "usage": {"input_tokens": 1200, "cached_input_tokens": 1000,
                                                  "output_tokens": 80}})
    elif TOOL == "gemini":
        emit({"type": "message", "role": "assistant", "content": "done", "delta": True},
             {"type": "result", "status": "success",
              "stats": {"total_tokens": 1570, "input_tokens": 1500, "output_tokens": 70, "cached": 300, "input": 1200,
                        "duration_ms": 900, "tool_calls": 2, "models": {}}})
    else:
        print("Added train_gpt2.py to the chat.\n\nI will change the greeting.\n", flush=True)
        print("Tokens: 2.3k sent, 150 received. Cost: $0.0074 message, $0.0074 session.", flush=True)
        print("Tokens: 12k sent, 1.2k cache hit, 310 received. Cost: $0.04 message, $0.0474 session.", flush=True)
        print("Applied edit to train_gpt2.py", flush=True)


def main() -> int:
    if sys.argv[1:] == ["--version"]:
        print(VERSIONS[TOOL])
        return 0
    message_file = arg_after("--message-file")
    prompt = Path(message_file).read_text() if message_file else sys.stdin.read()
    record = os.environ["FAKE_TOOL_RECORD"]
    Path(record).write_text(json.dumps({
        "tool": TOOL, "argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd(), "prompt": prompt,
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [],
    }))
    script = Path(arg_after("--file") or "train_gpt2.py")
    with open(script, "a") as f:
        f.write(f"# edited by {TOOL}\n")
        if os.environ.get("FAKE_TOOL_RUN_ENV"):
            f.write(f"import json, os; json.dump(dict(os.environ), open({os.environ['FAKE_TOOL_RUN_ENV']!r}, 'w'))\n")
    if os.environ.get("FAKE_TOOL_SLEEP"):
        partial()
        child = subprocess.Popen(["sleep", "300"])
        Path(record + ".child").write_text(str(child.pid))
        time.sleep(float(os.environ["FAKE_TOOL_SLEEP"]))
    if os.environ.get("FAKE_TOOL_EXIT"):
        failure()
        return int(os.environ["FAKE_TOOL_EXIT"])
    success()
    return 0


sys.exit(main())
