"""The protected env contract, checked statically: a solution must read the data locations and the validation
size from the environment exactly as the start script does, and must not overwrite them.

The comparison is on the AST: every expression of the start script that reads a protected variable
(`os.environ["X"]`, `os.environ.get("X", ...)`, `os.getenv("X")`, ...) must appear, structurally identical, in
the solution; and no statement of the solution may store into a protected variable (`os.environ["X"] = ...`,
`os.environ.update(...)` naming it, `os.putenv("X", ...)`, `setdefault`). What this cannot see: arithmetic on
the value after it was read (docs/integrity.md lists the limits).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from functools import lru_cache

PROTECTED_ENV = ("NANOGPT_TRAIN_FILES", "NANOGPT_VAL_FILES", "NANOGPT_VAL_TOKENS")
_WRITERS = {"putenv", "setdefault", "update", "__setitem__", "pop", "unsetenv"}


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _read_expr(node: ast.Constant, parents: dict[ast.AST, ast.AST]) -> ast.AST | None:
    """The Subscript or Call that uses the protected name `node`, if any."""
    parent = parents.get(node)
    if isinstance(parent, ast.Subscript) and parent.slice is node:
        return parent
    if isinstance(parent, ast.Call) and node in parent.args:
        return parent
    return None


def _is_write(expr: ast.AST) -> bool:
    if isinstance(expr, ast.Subscript):
        return isinstance(expr.ctx, (ast.Store, ast.Del))
    if isinstance(expr, ast.Call):
        func = expr.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        return name in _WRITERS
    return False


def _env_usage(source: str) -> tuple[dict[str, set[str]], list[str]]:
    tree = ast.parse(source)
    parents = _parents(tree)
    reads: dict[str, set[str]] = {name: set() for name in PROTECTED_ENV}
    writes: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and node.value in PROTECTED_ENV):
            continue
        expr = _read_expr(node, parents)
        if expr is None:
            # A protected name used any other way (e.g. a dict passed to os.environ.update) counts as a write
            # only when it sits inside a writer call.
            anc = parents.get(node)
            while anc is not None and not isinstance(anc, ast.stmt):
                if isinstance(anc, ast.Call) and _is_write(anc):
                    writes.append(ast.unparse(anc))
                    break
                anc = parents.get(anc)
            continue
        if _is_write(expr):
            stmt = expr
            while stmt is not None and not isinstance(stmt, ast.stmt):
                stmt = parents.get(stmt)
            writes.append(ast.unparse(stmt if stmt is not None else expr))
        else:
            reads[node.value].add(ast.unparse(expr))
    return reads, writes


@lru_cache(maxsize=32)
def _env_usage_cached(source: str) -> tuple[tuple[tuple[str, frozenset[str]], ...], tuple[str, ...]]:
    reads, writes = _env_usage(source)
    return tuple((name, frozenset(r)) for name, r in reads.items()), tuple(writes)


def env_usage(source: str) -> tuple[dict[str, set[str]], list[str]]:
    """(reads, writes): per protected variable the set of read expressions (unparsed, normalized), and the
    source of every statement that writes one. Raises SyntaxError for unparsable source.

    Cached by the source text itself (an exact key: the same text always gives the same answer), so the start
    script, the same for every item, search node and repeat of a task, is parsed once per process; the caller
    gets fresh containers. A SyntaxError is not cached."""
    reads, writes = _env_usage_cached(source)
    return {name: set(r) for name, r in reads}, list(writes)


def contract_reasons(start_source: str, solution_source: str, script_name: str = "train_gpt2.py") -> list[str]:
    """Readable reasons why the solution breaks the env contract of the start script (empty if it keeps it).

    An unparsable solution yields no reason here: it will fail to run and be reported as crashed."""
    return files_contract_reasons(((script_name, start_source),), ((script_name, solution_source),))


def files_contract_reasons(start: Sequence[tuple[str, str]], solution: Sequence[tuple[str, str]]) -> list[str]:
    """The same over every file a run executes (sources.py; the script first): each read of the start's files
    must be somewhere in the solution's, and no file of the solution may write a protected variable."""
    start_reads = _union(start)
    solution_reads = _union(solution)
    if start_reads is None or solution_reads is None:
        return []
    reads, writes = solution_reads
    script_name = solution[0][0]
    who = script_name if len(solution) == 1 else f"{script_name} (with {', '.join(n for n, _ in solution[1:])})"
    reasons = []
    for name in PROTECTED_ENV:
        missing = sorted(start_reads[0][name] - reads[name])
        if missing:
            reasons.append(f"{who} no longer reads {name} from the environment as the start script does "
                           f"(expected {missing[0]})")
    reasons += [f"{rel} overwrites a protected variable: {w}" for rel, w in writes]
    return reasons


def _union(files: Sequence[tuple[str, str]]) -> tuple[dict[str, set[str]], list[tuple[str, str]]] | None:
    """The reads and (file, write) pairs of all files; None when the script itself does not parse. Another file
    that does not parse adds nothing (a run that imports it crashes)."""
    reads: dict[str, set[str]] = {name: set() for name in PROTECTED_ENV}
    writes: list[tuple[str, str]] = []
    for i, (rel, text) in enumerate(files):
        try:
            r, w = env_usage(text)
        except (SyntaxError, ValueError):
            if i == 0:
                return None
            continue
        for name in PROTECTED_ENV:
            reads[name] |= r[name]
        writes += [(rel, x) for x in w]
    return reads, writes
