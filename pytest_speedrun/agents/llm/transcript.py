"""The transcript format, written and read: every request, response, retry and stop of an item's LLM calls as
JSONL (`llm.jsonl`) with a readable `agent.log` beside it, and `llm_replies`, which reads an interrupted attempt's
`llm.jsonl` back into its answers by cache key (what `--speedrun-resume` replays).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_speedrun.agents.llm.client import Reply


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


def llm_replies(previous: Path | None) -> dict[str, dict]:
    """{cache key: answer} from an interrupted attempt's `llm.jsonl` (requests paired with their responses)."""
    path = None if previous is None else previous / "llm.jsonl"
    if path is None or not path.exists():
        return {}
    keys: dict[int, str] = {}
    replies: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut off by the interruption
        if event.get("type") == "request":
            keys[event["call"]] = event["cache_key"]
        elif event.get("type") == "response" and event.get("call") in keys:
            replies[keys[event["call"]]] = {k: event.get(k) for k in ("content", "input_tokens", "output_tokens",
                                                                       "finish_reason", "latency_s")}
    return replies
