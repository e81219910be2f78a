"""`pytest-speedrun fetch data` with the real huggingface_hub client against a loopback stand-in of the hub."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from array import array
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_speedrun.data.dataset import HEADER_INTS, MAGIC, read_header, write_shard

pytest.importorskip("huggingface_hub")


def _shard_bytes(tmp: Path, name: str, tokens: int) -> bytes:
    write_shard(tmp / name, list(range(tokens)))
    return (tmp / name).read_bytes()


class Hub:
    """Answers the hub's resolve endpoint (HEAD + GET) for one dataset repo."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.gets = files, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self, body_too: bool) -> None:
                prefix = "/datasets/kjj0/fineweb10B-gpt2/resolve/main/"
                name = self.path[len(prefix):] if self.path.startswith(prefix) else None
                body = outer.files.get(name) if name else None
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                if body_too:
                    outer.gets.append(name)
                self.send_response(200)
                self.send_header("X-Repo-Commit", "c" * 40)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body_too:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802
                self._serve(False)

            def do_GET(self) -> None:  # noqa: N802
                self._serve(True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def _fetch(hub: Hub, dest: Path, shards: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_ETAG_TIMEOUT="5",
               HF_HOME=str(dest.parent / "hf-home"))
    return subprocess.run([sys.executable, "-m", "pytest_speedrun.cli", "fetch", "data", "--train-shards",
                           str(shards), "--data-dir", str(dest), "--quiet"], env=env, capture_output=True, text=True,
                          timeout=120)


def test_fetch_data_downloads_and_validates_shards(tmp_path: Path) -> None:
    files = {"fineweb_val_000000.bin": _shard_bytes(tmp_path, "v", 3000)}
    files |= {f"fineweb_train_{i:06d}.bin": _shard_bytes(tmp_path, f"t{i}", 2000 + i) for i in (1, 2)}
    hub = Hub(files)
    dest = tmp_path / "fineweb10B"
    proc = _fetch(hub, dest, 2)
    assert proc.returncode == 0, proc.stderr
    assert "3 shard(s) verified" in proc.stdout
    assert read_header(dest / "fineweb_train_000002.bin").num_tokens == 2002
    hub.gets.clear()
    assert _fetch(hub, dest, 2).returncode == 0  # already there: nothing downloaded again
    assert hub.gets == []
    hub.httpd.shutdown()


def test_a_corrupt_shard_is_reported_in_one_line(tmp_path: Path) -> None:
    header = array("i", [0] * HEADER_INTS)
    header[0], header[1], header[2] = MAGIC, 1, 500  # claims 500 tokens, carries 10
    bad = header.tobytes() + array("H", range(10)).tobytes()
    hub = Hub({"fineweb_val_000000.bin": bad, "fineweb_train_000001.bin": _shard_bytes(tmp_path, "t", 100)})
    proc = _fetch(hub, tmp_path / "fw", 1)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "header says 500 tokens" in proc.stderr
    hub.httpd.shutdown()


def test_a_missing_shard_is_reported_in_one_line(tmp_path: Path) -> None:
    hub = Hub({"fineweb_val_000000.bin": _shard_bytes(tmp_path, "v", 100)})
    proc = _fetch(hub, tmp_path / "fw", 1)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "fineweb_train_000001.bin: download failed" in proc.stderr
    hub.httpd.shutdown()
