"""Is a solution the target record's script in disguise? Compared on Python tokens, not on text.

Two scripts are *the same code* when their token streams agree after dropping comments, blank lines and all
whitespace (tokenize's COMMENT and NL tokens; indentation is kept only as INDENT/DEDENT structure, so re-indenting
with another width or splitting a call over more lines changes nothing). Docstrings and other strings count as
code. A second, weaker equivalence also renames identifiers consistently (each name becomes the index of its
first appearance), so `s/val_loss/vl/g` over a copied answer is still a copy.

Why no similarity threshold: the unchanged start script is already 0.94-0.97 difflib-similar to its target for 6
of the 19 NanoGPT pairs, and an honest agent that implements a level-1 hint faithfully comes closer still. Only
identity is strong evidence, and even that is `suspicious`, not `tampered`: a faithful reproduction is possible.
"""

from __future__ import annotations

import io
import keyword
import tokenize
from collections.abc import Sequence
from functools import lru_cache

_DROP = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
_STRUCTURE = {tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE}


def code_tokens(source: str) -> list[tuple[int, str]] | None:
    """(type, text) of every token that carries code; None when the source does not tokenize."""
    tokens = _code_tokens(source)
    return list(tokens) if tokens is not None else None


# Cached by the source text itself (an exact key): the target record's script is the same for every item,
# search node and repeat of a task, so it is tokenized (and renamed) once per process.
@lru_cache(maxsize=32)
def _code_tokens(source: str) -> tuple[tuple[int, str], ...] | None:
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return tuple((t.type, "" if t.type in _STRUCTURE else t.string) for t in toks if t.type not in _DROP)


@lru_cache(maxsize=32)
def _renamed_tokens(source: str) -> tuple[tuple[int, str], ...] | None:
    tokens = _code_tokens(source)
    return tuple(_renamed(tokens)) if tokens is not None else None


def _renamed(tokens: tuple[tuple[int, str], ...]) -> list[tuple[int, str]]:
    seen: dict[str, str] = {}
    out = []
    for kind, text in tokens:
        if kind == tokenize.NAME and not keyword.iskeyword(text) and not keyword.issoftkeyword(text):
            text = seen.setdefault(text, f"n{len(seen)}")
        out.append((kind, text))
    return out


def near_copy_reasons(solution_source: str, target_source: str | None, script_name: str = "train_gpt2.py") -> list[str]:
    """Reasons (suspicious) why the solution is the target record's script, up to formatting or renaming."""
    if not target_source:
        return []
    sol, target = _code_tokens(solution_source), _code_tokens(target_source)
    if sol is None or target is None:
        return []
    if sol == target:
        return [f"{script_name} is the target record's script up to comments, blank lines and whitespace "
                f"({len(sol)} identical tokens): a copy of the human answer"]
    if len(sol) == len(target) and _renamed_tokens(solution_source) == _renamed_tokens(target_source):
        names = {t for k, t in sol if k == tokenize.NAME} ^ {t for k, t in target if k == tokenize.NAME}
        return [f"{script_name} is the target record's script up to comments, whitespace and consistently renamed "
                f"identifiers ({len(sol)} tokens; renamed: {', '.join(sorted(names)[:6])}): a copy of the human answer"]
    return []


def files_near_copy_reasons(solution: Sequence[tuple[str, str]], target: Sequence[tuple[str, str]] | None,
                            start: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The same over every file a run executes (sources.py; the script first): any file of the solution that is
    the target's script (moved into a module, or run by `exec`), or one of the target's other files that the
    target changed (it has no equal among the start's files), up to formatting or renaming."""
    if not target:
        return []
    start_tokens = {_code_tokens(text) for _, text in start} - {None}
    answers = [(0, name, text) for name, text in target[:1]]
    answers += [(i, name, text) for i, (name, text) in enumerate(target[1:], start=1)
                if _code_tokens(text) is not None and _code_tokens(text) not in start_tokens]
    reasons: list[str] = []
    for rel, text in solution:
        for i, name, answer in answers:
            found = near_copy_reasons(text, answer, rel)
            if found:
                what = "the target record's script" if i == 0 else f"the target record's {name}"
                reasons += [r.replace("the target record's script", what) for r in found]
                break
    return reasons
