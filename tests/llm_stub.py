"""A scripted OpenAI-compatible chat server on loopback, for tests of the LLM agents through the real client.

`ChatServer` answers `POST /v1/chat/completions` from a queue of scripted replies (`answer(...)`, `error(...)`),
or, when the queue is empty, from a `responder(request) -> reply` function; `GET /v1/models` lists one model.
Every request is recorded.
"""

from __future__ import annotations

import difflib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fakes import write_suite
from pytest_speedrun.agents import AgentContext
from pytest_speedrun.agents.base import NodeResult
from pytest_speedrun.pipeline.item import prepare_workspace
from pytest_speedrun.tasks.manifest import load_task


@dataclass
class Reply:
    status: int = 200
    content: str = ""
    prompt_tokens: int = 1000
    completion_tokens: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"
    delay_s: float = 0.0  # wait before answering (to provoke client timeouts)


def answer(content: str, prompt_tokens: int = 1000, completion_tokens: int = 500) -> Reply:
    return Reply(content=content, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def error(status: int, message: str = "scripted error", headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, content=message, headers=headers or {})


class ChatServer:
    def __init__(self, model: str = "stub-model") -> None:
        self.model = model
        self.queue: list[Reply] = []
        self.responder: Callable[[dict], Reply] | None = None
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [
                        {"id": server.model, "object": "model", "created": 0, "owned_by": "stub"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "json": body})
                    reply = server.queue.pop(0) if server.queue else None
                if reply is None:
                    if server.responder is None:
                        self._json(500, {"error": {"message": "the stub has no scripted reply left"}})
                        return
                    reply = server.responder(body)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.status != 200:
                    self._json(reply.status, {"error": {"message": reply.content, "type": "stub"}}, reply.headers)
                    return
                self._json(200, {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                    "model": body.get("model", server.model),
                    "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                                 "message": {"role": "assistant", "content": reply.content}}],
                    "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                              "total_tokens": reply.prompt_tokens + reply.completion_tokens},
                })

            def _json(self, status: int, data: dict, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                try:
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads, self.httpd.block_on_close = True, False
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def push(self, *replies: Reply) -> None:
        with self.lock:
            self.queue.extend(replies)

    def chat_requests(self) -> list[dict]:
        return [r["json"] for r in self.requests if r["path"].endswith("/chat/completions")]

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- helpers to script a model ----------------------------------------------------------------------------

_SCRIPT = re.compile(r"```python\n(.*?)\n```", re.S)


def prompt_script(request: dict) -> str:
    """The current script shown in the first user message of a chat request (the last ```python block)."""
    user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    return _SCRIPT.findall(user)[-1] + "\n"


def blocks_between(before: str, after: str, context: int = 2) -> str:
    """SEARCH/REPLACE blocks that turn `before` into `after`, one per changed region, computed with difflib."""
    a, b = before.split("\n"), after.split("\n")
    out = []
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(context):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        out.append("<<<<<<< SEARCH\n" + "\n".join(a[i1:i2]) + "\n=======\n" + "\n".join(b[j1:j2])
                   + "\n>>>>>>> REPLACE")
    return "\n\n".join(out)


def set_work(script: str, work_s: float) -> str:
    """A SEARCH/REPLACE answer setting a fake record's WORK_S (its train time) to `work_s`."""
    line = next(ln for ln in script.splitlines() if ln.startswith("WORK_S = "))
    return (f"Spend less time per step.\n\n```\n<<<<<<< SEARCH\n{line}\n=======\nWORK_S = {work_s}\n"
            ">>>>>>> REPLACE\n```\n")


def current_work(script: str) -> float:
    return float(next(ln for ln in script.splitlines() if ln.startswith("WORK_S = ")).split("=", 1)[1])


# --- a fake ctx.execute, for scaffold tests without runs ----------------------------------------------------


class FakeRuns:
    """`ctx.execute` for fast scaffold tests: judges a fake record by its text. Its train time is WORK_S seconds;
    a `raise SystemExit` line makes it crash. FSR uses t_i = 1000 ms and t_i+1 = 500 ms (the mini manifests)."""

    def __init__(self, t_start_ms: float = 1000.0, t_target_ms: float = 500.0) -> None:
        self.t_start_ms, self.t_target_ms = t_start_ms, t_target_ms
        self.results: list = []
        self.scripts: list[str] = []

    def __call__(self, script_text: str, parent: int | None = None, note: str = "") -> NodeResult:
        index = len(self.results)
        crashed = "raise SystemExit" in script_text
        train = None if crashed else current_work(script_text) * 1000
        fsr = None if crashed else (self.t_start_ms - train) / (self.t_start_ms - self.t_target_ms)
        best = min((r.train_time_ms for r in self.results if r.valid), default=self.t_start_ms)
        kind = "buggy" if crashed else ("improved" if train < best else "unimproved")
        result = NodeResult(index=index, status="crashed" if crashed else "passed",
                            reasons=("exit code 3",) if crashed else (), val_loss=None if crashed else 1.95,
                            train_time_ms=train, wall_s=0.1, fsr=fsr, script_path="", parent=parent, note=note,
                            kind=kind, log_excerpt=f"step:0/10 val_loss:5.0000\nlog-marker-{index}")
        self.results.append(result)
        self.scripts.append(script_text)
        return result


def make_context(root: Path, hints: tuple[int, ...] = (1,), execute=None, name: str = "art") -> AgentContext:
    """An agent context for task mini01 of a fresh mini suite under `root` (artifacts in `root/name`)."""
    suite = root / "suite"
    if not suite.exists():
        write_suite(suite)
    task = load_task(suite / "mini" / "mini01.toml")
    art = root / name
    art.mkdir()
    workspace, script, text = prepare_workspace(task, hints, art)
    return AgentContext(task=task, workspace=workspace, script_path=script, hints=text, hint_levels=hints, seed=0,
                        artifacts_dir=art, timeout_s=600, execute=execute)
