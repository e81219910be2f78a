"""Named compat fixes: structural repairs of pinned record scripts that break on a newer torch for a reason that has
nothing to do with their speed.

A fix reads a script's syntax tree, finds the construct it repairs, and inserts the few tokens that repair it. It
carries no record text, so it applies to any script with the construct (renamed variables, other op names) and
to no script without it. Where it applies, it applies to every run of the task alike (start, target, the agent's
start script, calibration); `apply_fixes` says which fixes changed a script, for the item's record.

`fp8-fake-strides`: a `torch.library.custom_op` whose real implementation returns a transposed matrix (a fresh
dense result followed by `.t()`, `.T`, `.mT` or `.transpose(i, j)`), while the fake registered for it
(`@op.register_fake`, `op.register_fake(fn)`, `torch.library.register_fake("ns::op")`) returns a tensor that is not
provably laid out that way. Since torch checks the compiled graph's fallback-kernel outputs against the fake's
sizes and strides (`assert_size_stride`), such a script dies at its first backward step. The fix makes the
fake's element column-major the way the real op does: `E` becomes `E<flip>.contiguous()<flip>`, with the real
op's own transposition as `<flip>`. The opposite mismatch (a dense real output, a provably transposed fake
element) gets `.contiguous()`. Layouts that the source alone cannot prove are left alone. docs/compat.md has
the upstream facts.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pytest_speedrun.errors import CompatError
from pytest_speedrun.judging.dataflow import walk_scope

_TRANSPOSED, _DENSE = "transposed", "dense"
# calls whose result is a fresh row-major tensor, whatever their inputs' layouts
_FRESH = frozenset({"_scaled_mm", "mm", "matmul", "bmm", "addmm", "linear", "empty", "zeros", "ones", "full",
                    "randn", "rand", "contiguous"})
# methods whose result keeps the receiver's layout (preserve_format); `torch.x(...)` forms are not read
_SAME = frozenset({"to", "float", "bfloat16", "half", "double", "type", "type_as", "clone", "detach", "mul", "div",
                   "add", "sub", "neg", "abs"})
_LIKE = frozenset({"empty_like", "zeros_like", "ones_like", "full_like", "randn_like", "rand_like"})
_FAKE_REGISTRARS = frozenset({"register_fake", "impl_abstract"})
_MAX_DEPTH = 24


@dataclass(frozen=True)
class _Layout:
    kind: str  # _TRANSPOSED or _DENSE
    flip: str = ""  # for a transposed one: the transposition as written, e.g. ".t()"


@dataclass(frozen=True)
class _Site:
    """One fake's return statement that disagrees with its op: what to insert, or why it cannot be repaired."""

    op: str
    line: int
    inserts: tuple[tuple[int, str], ...] = ()  # (byte offset in the UTF-8 source, text)
    problem: str = ""


@dataclass(frozen=True)
class CompatFix:
    """A named structural repair of a script, with the upstream fact it rests on and the probe that detects the
    breakage it repairs."""

    name: str
    summary: str
    upstream: str
    probe: str
    _plan: Callable[[str], list[_Site]] = field(repr=False, compare=False, default=lambda source: [])

    def matches(self, source: str) -> bool:
        """The construct this fix repairs is in `source` (an unparsable source holds none)."""
        return bool(self._plan(source))

    def apply(self, source: str) -> str:
        """The repaired source (unchanged where the construct is absent; idempotent). CompatError when the construct
        is found but cannot be repaired."""
        sites = self._plan(source)
        for site in sites:
            if site.problem:
                raise CompatError(f"compat fix {self.name}: line {site.line}: the fake of op '{site.op}' "
                                  f"{site.problem}; fix that fake by hand, or run the task in its own runtime")
        if not sites:
            return source
        data = source.encode("utf-8")
        for offset, text in sorted((i for s in sites for i in s.inserts), reverse=True):
            data = data[:offset] + text.encode("utf-8") + data[offset:]
        repaired = data.decode("utf-8")
        try:
            ast.parse(repaired)
        except SyntaxError as exc:  # a bug of ours, never the script's: say so plainly
            raise CompatError(f"compat fix {self.name}: the repaired script does not parse ({exc.msg}, line "
                              f"{exc.lineno}); this is a bug of the fix, please report it") from None
        if self._plan(repaired):
            raise CompatError(f"compat fix {self.name}: the repaired script still holds the construct; this is a bug "
                              "of the fix, please report it")
        return repaired


# --- reading layouts ---------------------------------------------------------------------------------------------

def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


class _Scope:
    """The names of one function body that are bound only by plain top-level assignments, so a returned name can be
    read back to the expression it was last bound to; and the functions visible from it."""

    def __init__(self, fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Module, outer: dict[str, ast.AST]) -> None:
        self.defs: dict[str, ast.AST] = dict(outer)
        self.assigns: dict[str, list[tuple[int, ast.expr]]] = {}
        plain: set[int] = set()
        for stmt in fn.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.defs[stmt.name] = stmt
            target = value = None
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target, value = stmt.targets[0], stmt.value
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                target, value = stmt.target, stmt.value
            if isinstance(target, ast.Name) and value is not None:
                self.assigns.setdefault(target.id, []).append((stmt.lineno, value))
                plain.add(id(target))
        self.opaque = {node.id for node in walk_scope(fn) if isinstance(node, ast.Name)
                       and isinstance(node.ctx, ast.Store) and id(node) not in plain}
        if not isinstance(fn, ast.Module):
            args = fn.args
            self.opaque |= {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}

    def bound(self, name: str, before_line: int) -> tuple[int, ast.expr] | None:
        if name in self.opaque:
            return None
        earlier = [(line, value) for line, value in self.assigns.get(name, []) if line < before_line]
        return earlier[-1] if earlier else None


def _flip(node: ast.expr) -> tuple[ast.expr, str] | None:
    """(the transposed operand, the transposition as written) when `node` swaps two dimensions."""
    if isinstance(node, ast.Attribute) and node.attr in ("T", "mT"):
        return node.value, f".{node.attr}"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not node.keywords:
        if node.func.attr == "t" and not node.args:
            return node.func.value, ".t()"
        dims = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, int)
                and not isinstance(a.value, bool)]
        if node.func.attr in ("transpose", "swapaxes", "swapdims") and len(node.args) == 2 == len(dims):
            return node.func.value, f".{node.func.attr}({dims[0]}, {dims[1]})"
    return None


def _layout(node: ast.expr, scope: _Scope, line: int, depth: int = 0) -> _Layout | None:
    """The layout `node` provably has, read from the source alone; None when it cannot be told."""
    if depth > _MAX_DEPTH:
        return None
    if isinstance(node, ast.Name):
        bound = scope.bound(node.id, line)
        return None if bound is None else _layout(bound[1], scope, bound[0], depth + 1)
    flipped = _flip(node)
    if flipped is not None:
        inner = _layout(flipped[0], scope, line, depth + 1)
        if inner is None:
            return None
        return _Layout(_TRANSPOSED, flipped[1]) if inner.kind == _DENSE else _Layout(_DENSE)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
        return _Layout(_DENSE)
    if not isinstance(node, ast.Call):
        return None
    if any(k.arg == "memory_format" for k in node.keywords):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name in _FRESH and not (name == "contiguous" and node.args):
        return _Layout(_DENSE)
    if name in _LIKE and node.args:
        return _layout(node.args[0], scope, line, depth + 1)
    if name in _SAME and isinstance(func, ast.Attribute) and not _dotted(func.value).startswith("torch"):
        return _layout(func.value, scope, line, depth + 1)
    return None


def _returns(fn: ast.AST) -> list[ast.Return]:
    return sorted((n for n in walk_scope(fn) if isinstance(n, ast.Return) and n.value is not None),
                  key=lambda n: n.lineno)


def _elements(node: ast.expr) -> list[ast.expr]:
    return list(node.elts) if isinstance(node, ast.Tuple) else [node]


def _result_layouts(fn: ast.AST, outer: dict[str, ast.AST], depth: int = 0) -> list[list[_Layout | None]]:
    """Per return statement of a real op's implementation, the layouts of what it returns; a returned call of a
    function defined beside it (a compiled inner `impl`) is read through."""
    scope = _Scope(fn, outer)  # type: ignore[arg-type]
    found: list[list[_Layout | None]] = []
    for ret in _returns(fn):
        value, line = ret.value, ret.lineno
        if isinstance(value, ast.Name) and (bound := scope.bound(value.id, line)) is not None \
                and isinstance(bound[1], ast.Tuple):
            value, line = bound
        callee = value.func.id if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) else None
        if callee in scope.defs and depth < 4 and isinstance(scope.defs[callee], ast.FunctionDef):
            found += _result_layouts(scope.defs[callee], scope.defs, depth + 1)
        else:
            found.append([_layout(e, scope, line) for e in _elements(value)])
    return found


def _agreed(results: list[list[_Layout | None]]) -> list[_Layout | None]:
    if not results or len({len(r) for r in results}) != 1:
        return []
    return [column[0] if len(set(column)) == 1 else None for column in zip(*results)]


# --- finding ops and their fakes ---------------------------------------------------------------------------------

def _op_name(decorator: ast.expr) -> str | None:
    """The registered name of a `@torch.library.custom_op("ns::name", ...)` decorator."""
    if isinstance(decorator, ast.Call) and _dotted(decorator.func).split(".")[-1] == "custom_op" and decorator.args:
        first = decorator.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def _fake_target(node: ast.expr) -> tuple[str | None, str | None, ast.expr | None]:
    """For a registration `node` (a decorator, or a call made at block level): (op variable, op name, the function
    argument when it is a call)."""
    if isinstance(node, ast.Attribute) and node.attr in _FAKE_REGISTRARS and isinstance(node.value, ast.Name):
        return node.value.id, None, None  # @op.register_fake
    if not isinstance(node, ast.Call):
        return None, None, None
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr in _FAKE_REGISTRARS and isinstance(func.value, ast.Name) \
            and func.value.id != "torch" and len(node.args) == 1:
        return func.value.id, None, node.args[0]  # op.register_fake(fn)
    if isinstance(func, ast.Call):  # torch.library.register_fake("ns::op")(fn)
        var, name, _ = _fake_target(func)
        return var, name, node.args[0] if len(node.args) == 1 else None
    if _dotted(func).split(".")[-1] in _FAKE_REGISTRARS and node.args:
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return None, first.value, node.args[1] if len(node.args) > 1 else None
    return None, None, None


def _blocks(tree: ast.Module) -> Iterable[ast.AST]:
    yield tree
    yield from (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _pairs(block: ast.AST, module_defs: dict[str, ast.AST]) -> Iterable[tuple[str, ast.FunctionDef, ast.AST,
                                                                            dict[str, ast.AST]]]:
    """(op name, the op's real function, its fake, the functions visible to the op) for every op of one block."""
    ops_by_var: dict[str, tuple[str, ast.FunctionDef]] = {}
    defs: dict[str, list[tuple[int, ast.AST]]] = {}
    visible = dict(module_defs)
    body = getattr(block, "body", [])
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defs.setdefault(stmt.name, []).append((stmt.lineno, stmt))
            visible[stmt.name] = stmt
            for dec in stmt.decorator_list:
                if (name := _op_name(dec)) is not None and isinstance(stmt, ast.FunctionDef):
                    ops_by_var[stmt.name] = (name, stmt)
    by_name = {name: (name, fn) for name, fn in ops_by_var.values()}

    def op_of(var: str | None, name: str | None) -> tuple[str, ast.FunctionDef] | None:
        return ops_by_var.get(var or "") or by_name.get(name or "")

    for stmt in body:
        registrations: list[tuple[ast.expr, ast.AST | None]] = []
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            registrations = [(dec, stmt) for dec in stmt.decorator_list]
        elif isinstance(stmt, ast.Expr):
            registrations = [(stmt.value, None)]
        for node, decorated in registrations:
            var, name, arg = _fake_target(node)
            op = op_of(var, name)
            if op is None:
                continue
            fake = decorated
            if fake is None and isinstance(arg, ast.Name):
                earlier = [fn for line, fn in defs.get(arg.id, []) if line < stmt.lineno]
                fake = earlier[-1] if earlier else None
            if fake is not None:
                yield op[0], op[1], fake, visible


def _end_offset(starts: list[int], node: ast.expr) -> int:
    return starts[node.end_lineno - 1] + node.end_col_offset  # type: ignore[operator]


def _repair(element: ast.expr, text: str, starts: list[int]) -> tuple[tuple[int, str], ...]:
    """Insertions that append `text` to `element`, parenthesised unless it is a primary expression."""
    end = _end_offset(starts, element)
    if isinstance(element, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)):
        return ((end, text),)
    return ((starts[element.lineno - 1] + element.col_offset, "("), (end, ")" + text))


def _fake_sites(op: str, real: list[_Layout | None], fake: ast.AST, starts: list[int]) -> list[_Site]:
    scope = _Scope(fake, {})  # type: ignore[arg-type]
    sites = []
    for ret in _returns(fake):
        elements = _elements(ret.value)  # type: ignore[arg-type]
        if len(elements) != len(real):
            sites.append(_Site(op, ret.lineno, problem=f"returns {len(elements)} value(s) where the op returns "
                                                       f"{len(real)}, so the transposed output cannot be located"))
            continue
        inserts: list[tuple[int, str]] = []
        for want, element in zip(real, elements):
            if want is None:
                continue
            have = _layout(element, scope, ret.lineno)
            if want.kind == _TRANSPOSED and (have is None or have.kind != _TRANSPOSED):
                inserts += _repair(element, f"{want.flip}.contiguous(){want.flip}", starts)
            elif want.kind == _DENSE and have is not None and have.kind == _TRANSPOSED:
                inserts += _repair(element, ".contiguous()", starts)
        if inserts:
            sites.append(_Site(op, ret.lineno, tuple(inserts)))
    return sites


def _fake_strides_plan(source: str) -> list[_Site]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    starts = [0]
    for raw in source.encode("utf-8").splitlines(keepends=True):
        starts.append(starts[-1] + len(raw))
    module_defs: dict[str, ast.AST] = {s.name: s for s in tree.body
                                       if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
    sites: list[_Site] = []
    for block in _blocks(tree):
        for op, real_fn, fake, visible in _pairs(block, module_defs):
            real = _agreed(_result_layouts(real_fn, visible))
            if all(r is None for r in real):
                continue  # no output's layout can be read: the source alone cannot show a disagreement
            sites += _fake_sites(op, real, fake, starts)
    return sorted(set(sites), key=lambda s: (s.line, s.op))


def fake_spans(source: str) -> list[tuple[str, int, int]]:
    """(op name, first line, last line) of every fake registered for a custom op in `source`: the only code the
    `fp8-fake-strides` fix may change (the scan of benchmarks/compat_scan.py checks it does)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    module_defs: dict[str, ast.AST] = {s.name: s for s in tree.body
                                       if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return sorted({(op, fake.lineno, fake.end_lineno or fake.lineno)  # type: ignore[attr-defined]
                   for block in _blocks(tree) for op, _, fake, _ in _pairs(block, module_defs)}, key=lambda s: s[1])


FP8_FAKE_STRIDES = CompatFix(
    name="fp8-fake-strides",
    summary="make a custom op's registered fake return the real op's strides (a transposed output is column-major)",
    upstream="torch builds since early 2025 compare a custom op's real outputs with its fake's sizes and strides in "
             "compiled graphs; records 19-21 (FP8 lm_head, January 2025 nightlies) predate that check, and "
             "modded-nanogpt repaired its own scripts' fakes the same way (its PR #83, 2025-02-19).",
    probe="fp8-fake-strides",
    _plan=_fake_strides_plan,
)

FIXES: dict[str, CompatFix] = {fix.name: fix for fix in (FP8_FAKE_STRIDES,)}


def fixes_for(source: str) -> list[CompatFix]:
    """Every fix whose construct is in `source`, in FIXES order."""
    return [fix for fix in FIXES.values() if fix.matches(source)]


def apply_fixes(source: str, names: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """`source` with the named fixes applied in the order given, and the names of those that matched (and so
    changed it). An unknown name is a CompatError naming the known ones."""
    applied = []
    for name in names:
        fix = FIXES.get(name)
        if fix is None:
            raise CompatError(f"unknown compat fix '{name}' (known: {', '.join(sorted(FIXES))}); check the "
                              "runtime file's `compat` list")
        if fix.matches(source):
            source = fix.apply(source)
            applied.append(name)
    return source, tuple(applied)
