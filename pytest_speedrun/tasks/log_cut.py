"""Cut a record's source files out of its training log.

From late 2024 on, a NanoGPT-speedrun record script prints its own source at the top of its log, then a line of
100 `=` signs, then the run's output. From 2026-01 on the source is followed by the other files the script
imports (`triton_kernels.py`, later `dc_triton_kernels.py`), each after a header of a 40-dash line, a
`# NAME` line and another 40-dash line. So the log *is* the record: a manifest pins the log (size and sha256)
and the sha256 of each cut section, and the fetch or import cuts the sections and checks them.

The layout is written by the scripts as `print(code)` where `code = own + "\\n\\n" + dashes + "\\n# NAME\\n" +
dashes + "\\n\\n" + companion ...`, so every section comes back byte for byte; the one newline `print` adds
before the separator line is dropped.
"""

from __future__ import annotations

import re

from pytest_speedrun.errors import SpeedrunError

MAIN = "script"  # the section name of the record script itself (its file name is not in the log)
_SEPARATOR = re.compile(r"^={100}$", re.MULTILINE)
_DASHES = "-" * 40
_HEADER = re.compile(rf"\n\n{_DASHES}\n# ([A-Za-z0-9_.-]+\.py)\n{_DASHES}\n\n")


class LogCutError(SpeedrunError):
    """A log does not hold the section a manifest asks for."""


def source_block(text: str) -> str:
    """The source the script printed: everything before the first line of 100 `=`, less print's newline."""
    m = _SEPARATOR.search(text)
    if m is None or m.start() == 0:
        raise LogCutError("no source above a line of 100 '=': this log does not start with the script it ran")
    block = text[:m.start()]
    return block[:-1] if block.endswith("\n") else block


def sections(text: str) -> dict[str, str]:
    """Every section of a log's source: `script` (the record script), then each printed companion file by name."""
    block = source_block(text)
    parts = _HEADER.split(block)
    out = {MAIN: parts[0]}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in out:
            raise LogCutError(f"the log prints {name} twice; which copy to cut is ambiguous")
        out[name] = body
    return out


def cut(text: str, section: str) -> str:
    """One section of a log's source; LogCutError naming the sections there are when it is missing."""
    found = sections(text)
    if section not in found:
        raise LogCutError(f"no section {section!r} in the log's source (it has: {', '.join(found)})")
    return found[section]


def cut_bytes(data: bytes, section: str) -> bytes:
    """`cut` on a log's bytes, byte for byte (undecodable bytes pass through unchanged)."""
    return cut(data.decode("utf-8", errors="surrogateescape"), section).encode("utf-8", errors="surrogateescape")
