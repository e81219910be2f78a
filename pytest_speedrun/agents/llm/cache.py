"""The response cache: the model's answers on disk under `<cache dir>/llm/`, one JSON file per request key."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


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
