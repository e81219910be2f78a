"""The val-path rule: the printed val_loss must come from the model's loss the way the start script's does.

For every string that prints `val_loss:{x}` (an f-string, `.format` or `%`), the value of `x` is followed back to
the model call (dataflow.py) and normalised; the solution's printing sites must each have a path the start
script has. Anything done to the model's output on its way to the print changes the path: a factor, an offset, a
constant, a min over validations, a value from elsewhere (the training loss), fewer loop iterations, another
divisor, a cut of the contract's token count, a coarser format (`.2f` rounds 3.2849 to 3.28). Changes to how the
model is called do not (dataflow.py says how the call is told apart). A printed constant is accepted only if the
start script prints the very same text.

Two changes are accepted in one direction only: a fixed number of validation batches (`range(args.val_max_steps)`)
may become the contract's `<VALDIV(<VAL>)>`, as record 4 did, and a mean over ranks (`all_reduce(..., op=AVG)`)
may be added, as record 3 did; removing either is a change.

What this cannot see: an emission the parser cannot find (a `val_loss:` string assembled from pieces is reported
as "no line the harness can follow", but a second, obfuscated one next to a genuine one is not), what the loader
feeds the model (it is `<INPUT>`), a divisor of `<VAL>` larger than the batch the loader really yields, and
anything decided at run time (exec, a patched print). docs/integrity.md lists the limits.
"""

from __future__ import annotations

import ast
import re
import string
from dataclasses import dataclass
from functools import lru_cache

from pytest_speedrun.judging.dataflow import AVERAGED, VAL, Ctx, Flow, TooComplex

VAL_STEPS = f"<VALDIV({VAL})>"
TOO_COMPLEX = "<TOO COMPLEX>"  # never accepted: a path the rule cannot follow is not the start's
_CONST_SITE = re.compile(r"val_loss:\s*[-+]?(?:\d|\.\d|nan|inf)")


@dataclass(frozen=True)
class ValPath:
    """One place that prints `val_loss:`: its line, the normalised path, and the lines the path runs through."""

    line: int
    path: str
    lines: tuple[int, ...]


def _sites(tree: ast.Module) -> list[tuple[ast.AST, ast.AST | None, str]]:
    """(node, printed expression or None for a constant, format spec) of every string that prints val_loss."""
    out: list[tuple[ast.AST, ast.AST | None, str]] = []
    parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            vals = node.values
            for i, v in enumerate(vals):
                if not (isinstance(v, ast.Constant) and isinstance(v.value, str)):
                    continue
                if _CONST_SITE.search(v.value):
                    out.append((node, None, ""))
                elif v.value.endswith("val_loss:") and isinstance(fv := vals[i + 1] if i + 1 < len(vals) else None,
                                                                  ast.FormattedValue):
                    out.append((node, fv.value, _fstring_spec(fv)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format" \
                and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str) \
                and "val_loss:" in node.func.value.value:
            out.append(_format_site(node, node.func.value.value))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) \
                and isinstance(node.left.value, str) and "val_loss:" in node.left.value:
            out.append(_percent_site(node, node.left.value))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _CONST_SITE.search(node.value) \
                and not isinstance(parents.get(node), (ast.JoinedStr, ast.Expr)):  # not a docstring
            out.append((node, None, ""))
    return out


def _fstring_spec(fv: ast.FormattedValue) -> str:
    """`{x!r:.4f}` -> "!r.4f": the same spelling as a `.format` field or a `%` specifier gets."""
    spec = fv.format_spec
    text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in spec.values) if spec is not None else ""
    return (f"!{chr(fv.conversion)}" if fv.conversion != -1 else "") + text


def _format_site(call: ast.Call, text: str) -> tuple[ast.AST, ast.AST | None, str]:
    auto = 0
    for literal, fname, spec, conv in string.Formatter().parse(text):
        if fname is None:
            continue
        if literal.endswith("val_loss:"):
            spec = (f"!{conv}" if conv else "") + (spec or "")
            if fname == "" and auto < len(call.args):
                return call, call.args[auto], spec
            if fname.isdigit() and int(fname) < len(call.args):
                return call, call.args[int(fname)], spec
            kw = next((k.value for k in call.keywords if k.arg == fname), None)
            return call, kw, spec
        auto += fname == ""
    return call, None, ""


def _percent_site(node: ast.BinOp, text: str) -> tuple[ast.AST, ast.AST | None, str]:
    specs = list(re.finditer(r"%(?!%)[-+ #0-9.]*[a-zA-Z]", text))
    args = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
    for i, m in enumerate(specs):
        if text[: m.start()].endswith("val_loss:") and i < len(args):
            return node, args[i], m.group(0)[1:]
    return node, None, ""


def val_paths(source: str) -> list[ValPath]:
    """The val_loss printing sites of `source` with their normalised paths. Raises SyntaxError if unparsable.

    Cached by the source text itself (an exact key), so the start script's data flow, the same for every item,
    search node and repeat of a task, is followed once per process. What raises is not cached."""
    return list(_val_paths(source))


@lru_cache(maxsize=32)
def _val_paths(source: str) -> tuple[ValPath, ...]:
    tree = ast.parse(source)
    flow = Flow(tree)
    out = []
    for node, expr, spec in _sites(tree):
        stmt = flow.stmt_of(node)
        scope = flow.scope_of.get(stmt, tree)
        if expr is None:
            # a printed constant: the same text as the start script's is the start's own behaviour, any other is not
            path, lines = f"<CONSTANT {ast.unparse(node)}>", frozenset()
        else:
            try:
                c, lines = flow.canon(expr, Ctx(scope, stmt, {}, None if not isinstance(scope, ast.Module) else stmt))
                path = f"{'MEAN_RANKS ' if AVERAGED in lines else ''}FMT[{spec}]({c})"
            except (TooComplex, RecursionError):
                path, lines = TOO_COMPLEX, frozenset()
        lines = {n for n in lines if n != AVERAGED} | {stmt.lineno}
        out.append(ValPath(line=stmt.lineno, path=path, lines=tuple(sorted(lines))))
    return tuple(out)


def _accepted(start: list[ValPath]) -> set[str]:
    """Paths a solution may have: the start's, and the start's with a fixed count of validation batches replaced
    by the contract's count (<VAL> // batch)."""
    ok = {p.path for p in start} - {TOO_COMPLEX}
    for p in start:
        for fixed in set(re.findall(r"range\((<CFG [^<>]*>)\)", p.path)):
            ok.add(p.path.replace(fixed, VAL_STEPS))
    return ok | {f"MEAN_RANKS {p}" for p in ok if not p.startswith("MEAN_RANKS ")}


def _quote(source_lines: list[str], numbers: list[int], limit: int = 3) -> str:
    parts = []
    for n in numbers[:limit]:
        text = source_lines[n - 1].strip() if 0 < n <= len(source_lines) else ""
        parts.append(f"line {n}: {text[:110]}{'...' if len(text) > 110 else ''}")
    more = f" (+{len(numbers) - limit} more)" if len(numbers) > limit else ""
    return "; ".join(parts) + more


@dataclass(frozen=True)
class ValPathChange:
    """A printing site of the solution whose path the start script does not have, by line numbers only."""

    line: int  # where the solution prints val_loss (0: it prints none the rule can follow)
    too_complex: bool  # the path is too long to follow within the work limit
    changed: tuple[int, ...]  # the solution's path lines with no textual counterpart in the start's path
    missing: tuple[int, ...]  # the start's path lines with no counterpart in the solution's (when none changed)


def val_path_changes(start_source: str, solution_source: str) -> list[ValPathChange]:
    """The solution's printing sites whose normalised path is not one the start script allows. Empty when the
    paths agree, when the start script prints no val_loss this rule can follow, or when either script does not
    parse (an unparsable solution crashes and is reported as such)."""
    try:
        start = val_paths(start_source)
        solution = val_paths(solution_source)
    except (SyntaxError, RecursionError, MemoryError):  # what the compiler rejects too: the run will crash
        return []
    if all(p.path == TOO_COMPLEX for p in start):  # covers no sites at all: nothing to compare with
        return []
    if not solution:
        return [ValPathChange(0, False, (), ())]
    ok = _accepted(start)
    start_lines, sol_lines = start_source.splitlines(), solution_source.splitlines()
    start_path_lines = sorted({n for p in start for n in p.lines if 0 < n <= len(start_lines)})
    start_texts = {start_lines[n - 1].strip() for n in start_path_lines}
    out = []
    for p in solution:
        if p.path in ok:
            continue
        texts = {sol_lines[n - 1].strip() for n in p.lines if 0 < n <= len(sol_lines)}
        changed = [n for n in p.lines if 0 < n <= len(sol_lines) and sol_lines[n - 1].strip() not in start_texts]
        changed.sort(key=lambda n: n != p.line)  # the printing line first: it is what a reviewer reads first
        missing = [] if changed else [n for n in start_path_lines if start_lines[n - 1].strip() not in texts]
        out.append(ValPathChange(p.line, p.path == TOO_COMPLEX, tuple(changed), tuple(missing)))
    return out


def val_path_reasons(start_source: str, solution_source: str, script_name: str = "train_gpt2.py") -> list[str]:
    """Reasons (suspicious) why the solution's printed val_loss does not come from the model's loss the way the
    start script's does; each quotes the solution's own lines, with their numbers."""
    sol_lines = solution_source.splitlines()
    reasons = []
    for c in val_path_changes(start_source, solution_source):
        if c.line == 0:
            reasons.append(f"{script_name} has no line printing val_loss: whose value the harness can follow back "
                           "to the model (the start script prints it from the validation loop)")
            continue
        if c.too_complex:
            reasons.append(f"{script_name} line {c.line} prints a val_loss whose path is too long for the harness "
                           "to follow back to the model (val path)")
            continue
        detail = _quote(sol_lines, list(c.changed) or [c.line])
        if c.missing:
            detail += f"; the start script's line(s) {', '.join(map(str, c.missing[:5]))} have no counterpart"
        reasons.append(f"{script_name} line {c.line} prints a val_loss whose path from the model's loss differs "
                       f"from the start script's (val path): {detail}")
    return reasons
