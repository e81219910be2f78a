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
import hashlib
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from pytest_speedrun.judging.dataflow import AVERAGED, VAL, Ctx, Flow, TooComplex
from pytest_speedrun.judging.sources import module_name

VAL_STEPS = f"<VALDIV({VAL})>"
TOO_COMPLEX = "<TOO COMPLEX>"  # never accepted: a path the rule cannot follow is not the start's
_LINKED = re.compile(r"[\w.]+#[0-9a-f?]+")  # a function of another file of the run on a path, with its digest
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
    file: str = ""  # the solution's file that prints it ("": the script)
    edited: tuple[str, ...] = ()  # functions of other files of the run on the path, changed from the start's


def val_path_changes(start_source: str, solution_source: str) -> list[ValPathChange]:
    """The solution's printing sites whose normalised path is not one the start script allows. Empty when the
    paths agree, when the start script prints no val_loss this rule can follow, or when either script does not
    parse (an unparsable solution crashes and is reported as such)."""
    return [replace(c, file="") for c in files_val_path_changes((("", start_source),), (("", solution_source),))]


def files_val_path_changes(start: Sequence[tuple[str, str]],
                           solution: Sequence[tuple[str, str]]) -> list[ValPathChange]:
    """The same over every file a run executes (sources.py; the script first): every site of every solution
    file must have a path some start file has. A path through a function of another file of the run names that
    function with a digest of its definition, so editing it changes the path (`_linked`)."""
    start_paths = _file_paths(start)
    solution_paths = _file_paths(solution)
    if start_paths is None or solution_paths is None:
        return []
    flat_start = [p for _, _, paths in start_paths for p in paths]
    if all(p.path == TOO_COMPLEX for p in flat_start):  # covers no sites at all: nothing to compare with
        return []
    if not any(paths for _, _, paths in solution_paths):
        return [ValPathChange(0, False, (), (), solution[0][0])]
    ok = _accepted(flat_start)
    start_lines = [(text.splitlines(), paths) for _, text, paths in start_paths]
    start_texts = {lines[n - 1].strip() for lines, paths in start_lines for p in paths for n in p.lines
                   if 0 < n <= len(lines)}
    script_lines = start_lines[0][0]
    script_path_lines = sorted({n for p in start_paths[0][2] for n in p.lines if 0 < n <= len(script_lines)})
    start_linked = {x for p in flat_start for x in _LINKED.findall(p.path)}
    out = []
    for rel, text, paths in solution_paths:
        sol_lines = text.splitlines()
        for p in paths:
            if p.path in ok:
                continue
            texts = {sol_lines[n - 1].strip() for n in p.lines if 0 < n <= len(sol_lines)}
            changed = [n for n in p.lines if 0 < n <= len(sol_lines) and sol_lines[n - 1].strip() not in start_texts]
            changed.sort(key=lambda n: n != p.line)  # the printing line first: it is what a reviewer reads first
            missing = [] if changed else [n for n in script_path_lines if script_lines[n - 1].strip() not in texts]
            edited = tuple(sorted({x.split("#")[0] for x in _LINKED.findall(p.path) if x not in start_linked}))
            out.append(ValPathChange(p.line, p.path == TOO_COMPLEX, tuple(changed), tuple(missing), rel, edited))
    return out


def _file_paths(files: Sequence[tuple[str, str]]) -> list[tuple[str, str, list[ValPath]]] | None:
    """(file, text, its sites with linked paths) per file; None when the script itself does not parse. Another
    file that does not parse has no sites (a run that imports it crashes)."""
    modules = {module_name(rel): text for rel, text in files[1:] if rel.endswith(".py")}
    out = []
    for i, (rel, text) in enumerate(files):
        try:
            paths = val_paths(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):  # what the compiler rejects: a crash
            if i == 0:
                return None
            paths = []
        if modules:
            paths = [replace(p, path=_linked(p.path, modules)) for p in paths]
        out.append((rel, text, paths))
    return out


def _linked(path: str, modules: dict[str, str]) -> str:
    """`helpers.evaluate(...)` -> `helpers.evaluate#<digest>(...)` for a module of the run: the digest covers the
    definition of `evaluate` and of every module-level name it uses, transitively."""
    for name in sorted(modules, key=len, reverse=True):
        defs = _definitions(modules[name])
        path = re.sub(rf"(?<![\w.#]){re.escape(name)}\.(\w+)(?![#.\w])",
                      lambda m, n=name, d=defs: f"{n}.{m.group(1)}#{d.get(m.group(1), '?')}", path)
    return path


@lru_cache(maxsize=32)
def _definitions_cached(text: str) -> tuple[tuple[str, str], ...]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ()
    defs: dict[str, list[ast.stmt]] = {}
    for stmt in tree.body:
        for name in _bound(stmt):
            defs.setdefault(name, []).append(stmt)
    out = []
    for name in defs:
        seen, todo = set(), [name]
        while todo:
            n = todo.pop()
            if n in seen or n not in defs:
                continue
            seen.add(n)
            todo += [x.id for st in defs[n] for x in ast.walk(st) if isinstance(x, ast.Name)]
        dump = "\n".join(ast.dump(st) for n in sorted(seen) for st in defs[n])
        out.append((name, hashlib.sha256(dump.encode()).hexdigest()[:12]))
    return tuple(out)


def _definitions(text: str) -> dict[str, str]:
    """Per module-level name, a digest of its definition and of what it uses (cached by the text)."""
    return dict(_definitions_cached(text))


def _bound(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).split(".")[0] for a in stmt.names]
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(
        stmt, (ast.AnnAssign, ast.AugAssign)) else []
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def val_path_reasons(start_source: str, solution_source: str, script_name: str = "train_gpt2.py") -> list[str]:
    """Reasons (suspicious) why the solution's printed val_loss does not come from the model's loss the way the
    start script's does; each quotes the solution's own lines, with their numbers."""
    return files_val_path_reasons(((script_name, start_source),), ((script_name, solution_source),))


def files_val_path_reasons(start: Sequence[tuple[str, str]], solution: Sequence[tuple[str, str]]) -> list[str]:
    """The same over every file a run executes (the script first); a site in another file is named by it."""
    texts = dict(solution)
    script_name = solution[0][0]
    reasons = []
    for c in files_val_path_changes(start, solution):
        if c.line == 0:
            others = f" or the files it runs ({', '.join(n for n, _ in solution[1:])})" if len(solution) > 1 else ""
            reasons.append(f"{script_name}{others} has no line printing val_loss: whose value the harness can follow "
                           "back to the model (the start script prints it from the validation loop)")
            continue
        if c.too_complex:
            reasons.append(f"{c.file} line {c.line} prints a val_loss whose path is too long for the harness "
                           "to follow back to the model (val path)")
            continue
        detail = _quote(texts[c.file].splitlines(), list(c.changed) or [c.line])
        if c.edited:
            detail += f"; {', '.join(c.edited)} (in another file of the run) is new or changed from the start's"
        if c.missing:
            detail += f"; the start script's line(s) {', '.join(map(str, c.missing[:5]))} have no counterpart"
        reasons.append(f"{c.file} line {c.line} prints a val_loss whose path from the model's loss differs "
                       f"from the start script's (val path): {detail}")
    return reasons
