"""Turn a model's answer into a new script: SEARCH/REPLACE blocks or a whole file.

An answer may hold several blocks of the form

    <<<<<<< SEARCH
    lines of the current script
    =======
    the lines that replace them
    >>>>>>> REPLACE

(inside code fences or not), or the complete script in a fenced code block. Reasoning blocks
(`<think>…</think>`) are dropped first. A block is located exactly if it can be, else with trailing whitespace
ignored, else with blank edge lines dropped and a consistent indentation shift (the replacement is shifted the
same way). Anything that does not apply raises `EditError` with a reason written for the model, which gets it
back as a reflection.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.S | re.I)
_THINK_CLOSE = re.compile(r"</(think|thinking|reasoning)>", re.I)
_THINK_OPEN = re.compile(r"<(think|thinking|reasoning)>", re.I)
_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\b.*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\b.*$")
_FENCE = re.compile(r"^\s*```")
_CODE_BLOCK = re.compile(r"^\s*```[ \t]*([\w+-]*)[^\n]*\n(.*?)^\s*```[ \t]*$", re.S | re.M)
MIN_WHOLE_FILE_FRACTION = 0.5  # a "whole file" shorter than this share of the script is taken for a fragment


class EditError(Exception):
    """The answer could not be turned into a script; the message is the reason, addressed to the model."""


@dataclass(frozen=True)
class Block:
    search: str
    replace: str


@dataclass(frozen=True)
class Edit:
    """The result of applying an answer: the new script and how it was given."""

    script: str
    form: str  # "search-replace" or "whole-file"
    blocks: int  # SEARCH/REPLACE blocks applied (0 for a whole file)
    plan: str  # the answer's prose outside the code, as the model wrote it (shortened)


def strip_reasoning(text: str) -> str:
    """Drop `<think>…</think>` blocks; an orphan closing tag (servers that eat the opening one) drops what precedes
    it; an unclosed opening tag (a cut-off answer) drops what follows."""
    text = _THINK.sub("", text)
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    opened = _THINK_OPEN.search(text)
    if opened:
        text = text[:opened.start()]
    return text.strip("\n")


def parse_blocks(text: str) -> list[Block]:
    """Every SEARCH/REPLACE block of `text`, in order. Raises EditError for a block that is not closed."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
        n = len(blocks) + 1
        j = i + 1
        while j < len(lines) and not _DIVIDER.match(lines[j]):
            if _SEARCH.match(lines[j]) or _REPLACE.match(lines[j]):
                raise EditError(f"SEARCH/REPLACE block {n} has no '=======' line between its SEARCH and "
                                "REPLACE parts")
            j += 1
        k = j + 1
        while k < len(lines) and not _REPLACE.match(lines[k]):
            if _SEARCH.match(lines[k]):
                break
            k += 1
        if j >= len(lines) or k >= len(lines) or not _REPLACE.match(lines[k]):
            raise EditError(f"SEARCH/REPLACE block {n} is not closed: each block needs a '=======' line and ends "
                            "with a '>>>>>>> REPLACE' line")
        blocks.append(Block(search="\n".join(lines[i + 1:j]), replace="\n".join(lines[j + 1:k])))
        i = k + 1
    return blocks


def _plan(text: str) -> str:
    """The prose of an answer: everything outside code fences and SEARCH/REPLACE blocks, shortened."""
    out, in_fence, in_block = [], False, False
    for line in text.splitlines():
        if _SEARCH.match(line):
            in_block = True
        elif _REPLACE.match(line):
            in_block = False
        elif _FENCE.match(line):
            in_fence = not in_fence
        elif not (in_fence or in_block) and line.strip():
            out.append(line.strip())
    plan = " ".join(out)
    return plan if len(plan) <= 600 else plan[:597] + "..."


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _find(haystack: list[str], needle: list[str], same) -> list[int]:
    n = len(needle)
    return [i for i in range(len(haystack) - n + 1) if all(same(haystack[i + k], needle[k]) for k in range(n))]


def _shift(line: str, delta: int) -> str:
    if not line.strip():
        return line
    if delta >= 0:
        return " " * delta + line
    return line[min(-delta, _indent(line)):]


def _trim_blank_edges(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _closest(script_lines: list[str], search_lines: list[str]) -> str:
    first = next((ln for ln in search_lines if ln.strip()), "")
    best, best_ratio = None, 0.0
    for i, line in enumerate(script_lines):
        ratio = difflib.SequenceMatcher(None, line.strip(), first.strip()).ratio()
        if ratio > best_ratio:
            best, best_ratio = i, ratio
    if best is None or best_ratio < 0.5:
        return f"its first line {first.strip()!r} is not in the script"
    return f"the closest line to its first line is line {best + 1}: {script_lines[best].strip()!r}"


def apply_block(script: str, block: Block, number: int = 1) -> str:
    """Apply one block to `script`; the SEARCH part must match exactly one place (see the module doc)."""
    lines = script.split("\n")
    search, replace = block.search.split("\n"), block.replace.split("\n")
    if not block.search.strip():
        raise EditError(f"SEARCH/REPLACE block {number} has an empty SEARCH part; copy the lines to replace "
                        "from the current script")
    tiers = [(search, replace, lambda a, b: a == b, 0),
             (search, replace, lambda a, b: a.rstrip() == b.rstrip(), 0)]
    trimmed = _trim_blank_edges(search)
    tiers.append((trimmed, _trim_blank_edges(replace), lambda a, b: a.strip() == b.strip(), None))
    for needle, new, same, delta in tiers:
        hits = _find(lines, needle, same)
        if delta is None:  # indentation drift: keep only matches with one consistent shift
            hits = [h for h in hits if len({_indent(lines[h + k]) - _indent(ln)
                                            for k, ln in enumerate(needle) if ln.strip()}) == 1]
        if len(hits) > 1:
            where = ", ".join(str(h + 1) for h in hits[:5])
            raise EditError(f"SEARCH/REPLACE block {number} matches {len(hits)} places (lines {where}); include "
                            "more surrounding lines so that it matches exactly one")
        if hits:
            at = hits[0]
            if delta is None:
                first = next(k for k, ln in enumerate(needle) if ln.strip())
                shift = _indent(lines[at + first]) - _indent(needle[first])
                new = [_shift(ln, shift) for ln in new]
            return "\n".join(lines[:at] + new + lines[at + len(needle):])
    raise EditError(f"SEARCH/REPLACE block {number} does not match the current script: {_closest(lines, search)}. "
                    "The SEARCH part must copy existing lines exactly")


def _whole_file(text: str, current: str) -> str:
    blocks = [(lang.lower(), body) for lang, body in _CODE_BLOCK.findall(text)]
    python = [body for lang, body in blocks if lang in ("", "python", "py", "python3")]
    if python:
        candidate = max(python, key=len)
    elif not blocks and text.strip():
        candidate = text.strip("\n") + "\n"
        try:
            compile(candidate, "train_gpt2.py", "exec")
        except SyntaxError:
            raise EditError("the answer holds neither SEARCH/REPLACE blocks nor a complete script in a ```python "
                            "code block") from None
    else:
        raise EditError("the answer holds neither SEARCH/REPLACE blocks nor a complete script in a ```python "
                        "code block")
    have, need = len(candidate.splitlines()), len(current.splitlines())
    if have < MIN_WHOLE_FILE_FRACTION * need:
        raise EditError(f"the code block has {have} lines and the script has {need}: give SEARCH/REPLACE blocks "
                        "for a partial change, or the complete script")
    return candidate


def apply_answer(current: str, answer: str) -> Edit:
    """The new script an answer asks for. Raises EditError (reason for the model) when it cannot be applied, when
    the result does not compile, or when it changes nothing."""
    text = strip_reasoning(answer)
    if not text.strip():
        raise EditError("the answer is empty (only reasoning, or cut off); give the edit itself")
    blocks = parse_blocks(text)
    if blocks:
        script = current
        for n, block in enumerate(blocks, start=1):
            script = apply_block(script, block, n)
        form = "search-replace"
    else:
        script = _whole_file(text, current)
        form = "whole-file"
    if current.endswith("\n") and not script.endswith("\n"):
        script += "\n"
    try:
        compile(script, "train_gpt2.py", "exec")
    except SyntaxError as exc:
        raise EditError(f"the edited script does not compile: line {exc.lineno}: {exc.msg}") from None
    if script == current:
        raise EditError("the edit leaves the script unchanged")
    return Edit(script=script, form=form, blocks=len(blocks), plan=_plan(text))
