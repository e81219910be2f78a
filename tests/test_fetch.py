"""Fetching pinned record scripts, against a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fakes import manifest
from pytest_speedrun import cli
from pytest_speedrun.errors import MissingInput
from pytest_speedrun.tasks.fetch import FetchError, cached_path, fetch_script, resolve_task, source_url
from pytest_speedrun.tasks.manifest import ScriptRef, load_task

BODY = b"# a record script\nprint('hello')\n" * 200
COMMIT = "b" * 40


class Server:
    """Serves `files` (path -> bytes) with Range support; `cut_after` truncates the next response."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: int | None = None
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append((self.path, self.headers.get("Range")))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng := self.headers.get("Range"):
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if outer.cut_after is not None:
                    self.wfile.write(chunk[: outer.cut_after])
                    outer.cut_after = None
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.httpd.shutdown()


def _ref(body: bytes = BODY) -> ScriptRef:
    url = f"https://raw.githubusercontent.com/owner/repo/{COMMIT}/record_5/train_gpt2.py"
    return ScriptRef(url=url, sha256=hashlib.sha256(body).hexdigest(), bytes=len(body))


def _serve(server: Server, ref: ScriptRef, body: bytes = BODY) -> None:
    server.files["/" + ref.url.split("githubusercontent.com/")[1]] = body


def test_mirror_base_keeps_the_pinned_path() -> None:
    assert source_url(_ref(), "http://mirror:8/") == f"http://mirror:8/owner/repo/{COMMIT}/record_5/train_gpt2.py"


def test_download_verifies_and_caches(server: Server, tmp_path: Path) -> None:
    ref = _ref()
    _serve(server, ref)
    got = fetch_script(ref, tmp_path, base=server.base)
    assert got.downloaded and got.path == cached_path(tmp_path, ref) and got.path.read_bytes() == BODY


def test_cached_script_is_reused_offline(server: Server, tmp_path: Path) -> None:
    ref = _ref()
    _serve(server, ref)
    fetch_script(ref, tmp_path, base=server.base)
    server.httpd.shutdown()
    got = fetch_script(ref, tmp_path, base="http://127.0.0.1:9")  # nothing listens there
    assert not got.downloaded and got.path.read_bytes() == BODY


def test_sha_mismatch_is_refused_and_nothing_is_kept(server: Server, tmp_path: Path) -> None:
    ref = _ref()
    _serve(server, ref, BODY + b"# tampered\n")
    with pytest.raises(FetchError, match="does not match the pinned"):
        fetch_script(ref, tmp_path, base=server.base)
    assert not cached_path(tmp_path, ref).exists()
    assert not list((tmp_path / "records").glob("*.part"))


def test_interrupted_download_resumes_with_a_range_request(server: Server, tmp_path: Path) -> None:
    ref = _ref()
    _serve(server, ref)
    server.cut_after = 1000
    with pytest.raises(FetchError, match="partial file is kept"):
        fetch_script(ref, tmp_path, base=server.base)
    got = fetch_script(ref, tmp_path, base=server.base)
    assert got.path.read_bytes() == BODY
    assert server.requests[-1][1] == "bytes=1000-"


def test_missing_file_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_script(_ref(), tmp_path, base=server.base)


def test_items_with_unfetched_scripts_skip_with_the_command(tmp_path: Path) -> None:
    suite = tmp_path / "net"
    suite.mkdir()
    ref = _ref()
    text = manifest("net01", "x.py", "y.py", reference="manifest", hints=False)
    for name in ("x.py", "y.py"):
        text = text.replace(f'{{ path = "{name}" }}', f'{{ url = "{ref.url}", sha256 = "{ref.sha256}" }}')
    (suite / "net01.toml").write_text(text)
    task = load_task(suite / "net01.toml")
    with pytest.raises(MissingInput, match=r"run: pytest-speedrun fetch records --suite mini --cache-dir"):
        resolve_task(task, tmp_path / "cache")
    cached = cached_path(tmp_path / "cache", ref)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(BODY)
    assert resolve_task(task, tmp_path / "cache").start.script.path == cached


def test_fetch_records_command(server: Server, tmp_path: Path, monkeypatch, capsys) -> None:
    suite = tmp_path / "net"
    suite.mkdir()
    ref = _ref()
    _serve(server, ref)
    text = manifest("net01", "x.py", "y.py", reference="manifest", hints=False)
    for name in ("x.py", "y.py"):
        text = text.replace(f'{{ path = "{name}" }}', f'{{ url = "{ref.url}", sha256 = "{ref.sha256}" }}')
    (suite / "net01.toml").write_text(text)
    assert cli.main(["fetch", "records", "--suite", str(suite), "--cache-dir", str(tmp_path / "c"),
                     "--base", server.base]) == 0
    assert "1 pinned script(s) verified" in capsys.readouterr().out
    server.files.clear()
    assert cli.main(["fetch", "records", "--suite", str(suite), "--cache-dir", str(tmp_path / "c"),
                     "--base", server.base]) == 0  # offline reuse
