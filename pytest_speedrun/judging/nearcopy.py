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

_DROP = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
_STRUCTURE = {tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE}


def code_tokens(source: str) -> list[tuple[int, str]] | None:
    """(type, text) of every token that carries code; None when the source does not tokenize."""
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return [(t.type, "" if t.type in _STRUCTURE else t.string) for t in toks if t.type not in _DROP]


def _renamed(tokens: list[tuple[int, str]]) -> list[tuple[int, str]]:
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
    sol, target = code_tokens(solution_source), code_tokens(target_source)
    if sol is None or target is None:
        return []
    if sol == target:
        return [f"{script_name} is the target record's script up to comments, blank lines and whitespace "
                f"({len(sol)} identical tokens): a copy of the human answer"]
    if _renamed(sol) == _renamed(target):
        names = {t for k, t in sol if k == tokenize.NAME} ^ {t for k, t in target if k == tokenize.NAME}
        return [f"{script_name} is the target record's script up to comments, whitespace and consistently renamed "
                f"identifiers ({len(sol)} tokens; renamed: {', '.join(sorted(names)[:6])}): a copy of the human answer"]
    return []
