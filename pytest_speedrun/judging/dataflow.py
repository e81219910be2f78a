"""The value of an expression in a training script, followed back through the script's data flow, as one
normalised string: what the val-path rule (valpath.py) compares between a solution and its start script.

An expression is followed backwards through plain and tuple assignments, augmented assignments (one inside a
loop is recorded with the loop's iterable: that is where a count of validation steps lives), in-place calls
(`dist.all_reduce(v, ...)`, `v.div_(n)`, `total[0] += ...`), calls of the script's own functions (inlined: their
return value is followed, parameters bound to the arguments), attributes of a hyperparameter object (followed into
the class body, so a changed default counts) and the env read of NANOGPT_VAL_TOKENS, which becomes `<VAL>`.
Variable names do not appear in the result, so renaming, moving a computation into a function or reordering
commuting steps does not change it. Events that reach a statement are those before it and, for a statement in a
loop, those later in the same loop (an earlier iteration ran them); a plain assignment replaces what came before.
`if` conditions are not followed: a conditional step counts as taken.

The model call: a call of a name bound to the model (an instance of a torch module class the script defines, or
`torch.compile(m)`, `DDP(m, ...)`, `m.cuda()`... of one) is `<MODEL>` whatever its arguments, and so is any part
of its output (`loss = out[1]`, `_, loss = model(x, y)`); every bare name passed to a model call (the batch) is
`<INPUT>`. New arguments, masks, windows or another loader feeding the model change nothing; what is done to the
model's output on its way to the print does.

Value-preserving normalisations the genuine records need: `.item()`, `.detach()`, `.float()`, `.double()`,
`.cpu()`, `.clone()`, `float()` and `int(<VAL>)` are dropped; numbers compare as floats (`0` is `0.0`); the
operands of `+` and `*` are sorted; `x op= y` is `x op y`; `all_reduce(..., op=AVG)` is left out of the string and
reported as the line marker `AVERAGED` (a mean over ranks commutes with the division by the step count; records
move it before or after); `<VAL> // batch` becomes `<VALDIV(<VAL>)>` with the batch dropped (the per-step batch
changes in 5 of the 19 NanoGPT pairs, the token count never does), and so does the stride of a `range` over a
`<VAL>`-derived length.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass, field

VAL_ENV = "NANOGPT_VAL_TOKENS"
VAL, MODEL, INPUT = "<VAL>", "<MODEL>", "<INPUT>"
AVERAGED = -1  # a "line number" that marks a value averaged over ranks (all_reduce with op AVG)
_PASS_METHODS = {"item", "detach", "float", "double", "cpu", "clone"}
_PASS_FUNCS = {"float"}
_INPLACE_OPS = {"div_": "/", "mul_": "*", "add_": "+", "sub_": "-"}
_REDUCERS = {"all_reduce", "reduce"}
_MODEL_METHODS = {"cuda", "to", "train", "eval", "float", "bfloat16", "half", "double", "requires_grad_"}
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
        ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^"}
_COMMUTATIVE = {"+", "*"}
_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_MAX_DEPTH = 60
_MAX_TEXT = 4000  # longer normalised values are replaced by a digest (equal values keep equal digests)
_MAX_WORK = 20_000  # expressions followed per script (about a second); the genuine records need under 100


class TooComplex(Exception):
    """The script's data flow is too large to follow within the work limit."""


@dataclass
class _Event:
    """Something a statement does to a name (or `name.attr`, `name[const]`): binds, assigns, updates or mutates it."""

    key: str
    kind: str  # assign | aug | mutate | loopvar (for and with targets) | bind (import, def, class)
    stmt: ast.stmt
    value: ast.AST | None = None
    index: int | None = None  # position in a tuple target
    op: str = ""
    text: str = ""  # bind events: what the name is bound to


@dataclass
class Ctx:
    """Where an expression is evaluated: its scope and statement, the bound parameters of an inlined function."""

    scope: ast.AST
    stmt: ast.stmt
    bindings: dict[str, tuple[str, frozenset[int]]] = field(default_factory=dict)
    module_stmt: ast.stmt | None = None  # where module-level names are looked up from inside an inlined function


class Flow:
    """The statements of a script, the events of every name per scope, and the names bound to the model.
    `canon(expr, ctx)` is the normalised value of `expr` at `ctx.stmt` and the lines it comes from."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.parent: dict[ast.AST, ast.AST] = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
        self.order: dict[ast.stmt, int] = {}
        self.loops: dict[ast.stmt, tuple[ast.AST, ...]] = {}
        self.scope_of: dict[ast.stmt, ast.AST] = {}
        self.events: dict[tuple[int, str], list[_Event]] = {}
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        self._index(tree, tree, ())
        self.models = self._model_names()
        self.inputs = self._model_inputs()
        self._active: set[tuple] = set()
        self._depth = 0
        self._memo: dict[tuple, tuple[str, frozenset[int]]] = {}
        self._work = 0

    # --- indexing --------------------------------------------------------------------------------------
    def _index(self, body_owner: ast.AST, scope: ast.AST, loops: tuple[ast.AST, ...]) -> None:
        for name in ("body", "orelse", "finalbody", "handlers"):
            for stmt in getattr(body_owner, name, []) or []:
                if isinstance(stmt, ast.ExceptHandler):
                    self._index(stmt, scope, loops)
                    continue
                self.order[stmt] = len(self.order)
                self.loops[stmt] = loops
                self.scope_of[stmt] = scope
                self._events_of(stmt, scope)
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.functions[stmt.name] = stmt
                    self._index(stmt, stmt, ())
                elif isinstance(stmt, ast.ClassDef):
                    self.classes[stmt.name] = stmt
                    self._index(stmt, stmt, ())
                elif isinstance(stmt, _LOOPS):
                    self._index(stmt, scope, loops + (stmt,))
                elif isinstance(stmt, ast.Match):
                    for case in stmt.cases:
                        self._index(case, scope, loops)
                else:
                    self._index(stmt, scope, loops)

    def _add(self, scope: ast.AST, ev: _Event) -> None:
        self.events.setdefault((id(scope), ev.key), []).append(ev)

    def _targets(self, target: ast.AST, stmt: ast.stmt, scope: ast.AST, kind: str, value: ast.AST | None,
                 index: int | None = None) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for i, elt in enumerate(target.elts):
                self._targets(elt, stmt, scope, kind, value, i)
            return
        key = _key(target)
        if key is not None:
            self._add(scope, _Event(key, kind, stmt, value, index))
        elif isinstance(target, ast.Subscript) and (base := _key(target.value)) is not None:
            self._add(scope, _Event(base, "mutate", stmt, target))  # an element whose index is not a constant

    def _events_of(self, stmt: ast.stmt, scope: ast.AST) -> None:
        if isinstance(stmt, ast.Assign):
            for t in stmt.targets:
                self._targets(t, stmt, scope, "assign", stmt.value)
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            self._targets(stmt.target, stmt, scope, "assign", stmt.value)
        elif isinstance(stmt, ast.AugAssign):
            key = _key(stmt.target)
            if key is not None:
                self._add(scope, _Event(key, "aug", stmt, stmt.value, op=_OPS.get(type(stmt.op), "?")))
            elif isinstance(stmt.target, ast.Subscript) and (base := _key(stmt.target.value)) is not None:
                self._add(scope, _Event(base, "mutate", stmt, stmt))
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            self._targets(stmt.target, stmt, scope, "loopvar", stmt.iter)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            for item in stmt.items:
                if item.optional_vars is not None:
                    self._targets(item.optional_vars, stmt, scope, "loopvar", item.context_expr)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                if isinstance(stmt, ast.Import):
                    name = alias.asname or alias.name.split(".")[0]
                    text = alias.name if alias.asname else name
                else:
                    name, text = alias.asname or alias.name, f"{stmt.module or ''}.{alias.name}"
                self._add(scope, _Event(name, "bind", stmt, text=text))
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self._add(scope, _Event(stmt.name, "bind", stmt, text=f"DEF {stmt.name}"))
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            call = stmt.value
            if isinstance(call.func, ast.Attribute) and (key := _key(call.func.value)) is not None:
                self._add(scope, _Event(key, "mutate", stmt, call))  # a method call may change its receiver
            fname = _callee_name(call.func)
            if "print" not in fname and not fname.startswith("log"):
                for arg in call.args:
                    if (key := _key(arg)) is not None:  # all_reduce(v) and friends change their argument
                        self._add(scope, _Event(key, "mutate", stmt, call))
        # walrus targets inside any statement
        for node in _walk_expr(stmt):
            if isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
                self._add(scope, _Event(node.target.id, "assign", stmt, node.value))

    def _local_module_classes(self) -> set[str]:
        return {name for name, c in self.classes.items()
                if any(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.name == "forward" for s in c.body)
                or any("Module" in ast.unparse(b) for b in c.bases)}

    def _model_names(self) -> set[str]:
        """Names bound to the model: an instance of a torch module the script defines, or a wrapper of one."""
        module_classes = self._local_module_classes()
        models: set[str] = set()

        def wraps(e: ast.AST) -> bool:
            if isinstance(e, ast.Name):
                return e.id in models
            if isinstance(e, ast.Attribute):
                return e.attr in {"module", "_orig_mod"} and wraps(e.value)
            if isinstance(e, ast.Call):
                if isinstance(e.func, ast.Name) and e.func.id in module_classes:
                    return True
                if isinstance(e.func, ast.Attribute) and e.func.attr in _MODEL_METHODS and wraps(e.func.value):
                    return True
                return bool(e.args) and isinstance(e.args[0], ast.Name) and e.args[0].id in models
            return False

        assigns = [(t, s.value) for s in ast.walk(self.tree) if isinstance(s, ast.Assign) for t in s.targets]
        assigns += [(s.target, s.value) for s in ast.walk(self.tree) if isinstance(s, ast.AnnAssign) and s.value]
        changed, passes = True, 0
        while changed and passes < 10:  # wrappers are bound in source order; a few passes settle any real script
            changed, passes = False, passes + 1
            for target, value in assigns:
                if isinstance(target, ast.Name) and target.id not in models and wraps(value):
                    models.add(target.id)
                    changed = True
        return models

    def _model_inputs(self) -> set[str]:
        names = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and self._is_model_call(node):
                names |= {a.id for a in node.args if isinstance(a, ast.Name)}
                names |= {k.value.id for k in node.keywords if isinstance(k.value, ast.Name)}
        return names

    def _is_model_call(self, call: ast.Call) -> bool:
        f = call.func
        if isinstance(f, ast.Name):
            return f.id in self.models
        return isinstance(f, ast.Attribute) and f.attr == "forward" and isinstance(f.value, ast.Name) \
            and f.value.id in self.models

    # --- helpers ---------------------------------------------------------------------------------------
    def stmt_of(self, node: ast.AST) -> ast.stmt:
        while not isinstance(node, ast.stmt):
            node = self.parent[node]
        return node

    def _reaching(self, scope: ast.AST, keys: list[str], at: ast.stmt | None) -> list[_Event]:
        """Events of `keys` that can reach `at`, in replay order: first those later in a loop around `at` (they
        ran in an earlier iteration), then those before it, each in source order."""
        evs = sorted({id(e): e for k in keys for e in self.events.get((id(scope), k), [])}.values(),
                     key=lambda e: self.order[e.stmt])
        if at is None:
            return evs
        here, around = self.order[at], set(self.loops.get(at, ()))
        carried = [e for e in evs if self.order[e.stmt] >= here and around.intersection(self.loops[e.stmt])]
        return carried + [e for e in evs if self.order[e.stmt] < here]

    # --- canonical values ------------------------------------------------------------------------------
    def canon(self, node: ast.AST | None, ctx: Ctx) -> tuple[str, frozenset[int]]:
        if node is None:
            return "None", frozenset()
        self._depth += 1
        self._work += 1
        if self._work > _MAX_WORK:
            raise TooComplex(f"more than {_MAX_WORK} steps to follow")
        try:
            if self._depth > _MAX_DEPTH:
                return "<DEEP>", frozenset()
            value, lines = self._canon(node, ctx)
        finally:
            self._depth -= 1
        if len(value) > _MAX_TEXT:  # shared subexpressions would otherwise grow the text exponentially
            digest = hashlib.sha1(value.encode()).hexdigest()[:20]
            value = f"<#{digest}{VAL if VAL in value else ''}>"
        return value, lines

    def _many(self, nodes: list[ast.AST], ctx: Ctx) -> tuple[list[str], frozenset[int]]:
        out, lines = [], frozenset()
        for n in nodes:
            c, ln = self.canon(n, ctx)
            out.append(c)
            lines |= ln
        return out, lines

    def _canon(self, node: ast.AST, ctx: Ctx) -> tuple[str, frozenset[int]]:
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return repr(float(v)), frozenset()
            return repr(v), frozenset()
        if isinstance(node, ast.Name):
            return self.name(node.id, ctx)
        if (env := _env_name(node)) is not None:
            return (VAL if env == VAL_ENV else f"<ENV {env}>"), frozenset()
        if isinstance(node, ast.Attribute):
            if (key := _key(node)) is not None and "." in key:
                return self.compound(key, ctx)
            base, lines = self.canon(node.value, ctx)
            if base == MODEL:
                return MODEL, lines
            projected, ln = self.project(base, f".{node.attr}")
            return projected, lines | ln
        if isinstance(node, ast.Subscript):
            key = _key(node)
            if key is not None and "[" in key:
                return self.compound(key, ctx)
            (base, sl), lines = self._many([node.value, node.slice], ctx)
            return (MODEL if base == MODEL else f"{base}[{sl}]"), lines  # part of the model's output
        if isinstance(node, ast.Call):
            return self.call(node, ctx)
        if isinstance(node, ast.BinOp):
            (left, right), lines = self._many([node.left, node.right], ctx)
            return _binop(left, _OPS.get(type(node.op), "?"), right), lines
        if isinstance(node, ast.UnaryOp):
            c, lines = self.canon(node.operand, ctx)
            return f"({type(node.op).__name__} {c})", lines
        if isinstance(node, (ast.Tuple, ast.List)):
            parts, lines = self._many(list(node.elts), ctx)
            return f"({', '.join(parts)})", lines
        if isinstance(node, ast.IfExp):
            parts, lines = self._many([node.test, node.body, node.orelse], ctx)
            return f"IF({', '.join(parts)})", lines
        if isinstance(node, (ast.Compare, ast.BoolOp)):
            kids = [node.left, *node.comparators] if isinstance(node, ast.Compare) else list(node.values)
            parts, lines = self._many(kids, ctx)
            ops = [type(o).__name__ for o in node.ops] if isinstance(node, ast.Compare) else [type(node.op).__name__]
            return f"{'/'.join(ops)}({', '.join(parts)})", lines
        if isinstance(node, ast.JoinedStr):
            parts, lines = self._many(list(node.values), ctx)
            return f"STR({' '.join(parts)})", lines
        if isinstance(node, ast.FormattedValue):
            c, lines = self.canon(node.value, ctx)
            spec = ast.unparse(node.format_spec) if node.format_spec is not None else ""
            return f"FMT[{node.conversion}{spec}]({c})", lines
        if isinstance(node, ast.Slice):
            parts, lines = self._many([node.lower, node.upper, node.step], ctx)
            return f"SLICE({', '.join(parts)})", lines
        if isinstance(node, ast.NamedExpr):
            return self.canon(node.value, ctx)
        if isinstance(node, ast.Starred):
            c, lines = self.canon(node.value, ctx)
            return f"*{c}", lines
        # comprehensions, lambdas, ...: compared as written (a change there is a change of the path)
        return f"EXPR({ast.unparse(node)})", frozenset()

    def name(self, n: str, ctx: Ctx) -> tuple[str, frozenset[int]]:
        if n in ctx.bindings:
            return ctx.bindings[n]
        if n in self.inputs:
            return INPUT, frozenset()
        return self.compound(n, ctx)

    def compound(self, key: str, ctx: Ctx) -> tuple[str, frozenset[int]]:
        """The value of a name, `name.attr` or `name[const]` at ctx.stmt, by replaying the events that reach it.
        Events of the whole object apply to its parts (`total = zeros(2)` then `all_reduce(total)`)."""
        memo = (key, id(ctx.scope), id(ctx.stmt), id(ctx.module_stmt),
                tuple(sorted((k, v[0]) for k, v in ctx.bindings.items())))
        if memo in self._memo:
            return self._memo[memo]
        result = self._compound(key, ctx)
        if "<RECUR" not in result[0]:  # a value cut short by the cycle guard depends on where it was asked from
            self._memo[memo] = result
        return result

    def _compound(self, key: str, ctx: Ctx) -> tuple[str, frozenset[int]]:
        root = re.split(r"[.\[]", key, maxsplit=1)[0]
        if root in ctx.bindings or root in self.inputs:
            base, lines = self.name(root, ctx)
            projected, ln = self.project(base, key[len(root):])
            return projected, lines | ln
        scope, at = ctx.scope, ctx.stmt
        while True:
            evs = self._reaching(scope, _prefixes(key), at)
            if evs:
                return self._replay(key, evs, Ctx(scope, at, ctx.bindings, ctx.module_stmt))
            if isinstance(scope, ast.Module):
                break
            if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)) and root in _params(scope):
                return f"<PARAM {root}>{key[len(root):]}", frozenset()
            scope, at = self.tree, ctx.module_stmt
        return key, frozenset()  # a builtin or an undefined global: its name

    def project(self, base: str, suffix: str) -> tuple[str, frozenset[int]]:
        """`base` followed by `.attr` / `[k]` parts; an attribute of a hyperparameter object is its class field."""
        lines: frozenset[int] = frozenset()
        for part in re.findall(r"\.[A-Za-z_]\w*|\[[^\]]*\]", suffix):
            m = re.fullmatch(r"<INST (\w+)>", base)
            found = self._field(m.group(1), part[1:]) if m and part.startswith(".") else None
            if found is not None:
                fv, ln = found
                base, lines = (fv if VAL in fv else f"<CFG {part[1:]}={fv}>"), lines | ln
            else:
                base = f"{base}{part}"
        return base, lines

    def _field(self, cls: str, attr: str) -> tuple[str, frozenset[int]] | None:
        c = self.classes.get(cls)
        if c is None:
            return None
        for stmt in c.body:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else \
                [stmt.target] if isinstance(stmt, ast.AnnAssign) and stmt.value is not None else []
            if any(isinstance(t, ast.Name) and t.id == attr for t in targets):
                value, lines = self.canon(stmt.value, Ctx(c, stmt))
                return value, lines | {stmt.lineno}
        return None

    def _replay(self, key: str, evs: list[_Event], ctx: Ctx) -> tuple[str, frozenset[int]]:
        kills = [i for i, e in enumerate(evs) if e.kind in ("assign", "loopvar", "bind")]
        evs = evs[kills[-1]:] if kills else evs  # what came before the last plain binding cannot matter
        guard = (key, id(ctx.scope), id(ctx.stmt), tuple(sorted(ctx.bindings)))
        if guard in self._active:
            return f"<RECUR {key}>", frozenset()
        self._active.add(guard)
        try:
            value, lines, is_module = None, frozenset(), False
            around = set(self.loops.get(ctx.stmt, ())) if ctx.stmt is not None else set()
            for e in evs:
                ectx = Ctx(ctx.scope, e.stmt, ctx.bindings, ctx.module_stmt)
                inner = [lp for lp in self.loops[e.stmt] if lp not in around]  # loops the value accumulates over
                suffix = key[len(e.key):]  # the part of a whole-object event that `key` refers to
                if e.kind == "bind":  # a binding replaces the value: the lines of what it replaced drop out
                    value, ln = self.project(e.text, suffix)
                    lines = ln | {e.stmt.lineno}
                    is_module = not e.text.startswith("DEF ")  # calls on a module do not change the module
                elif e.kind in ("assign", "loopvar"):
                    v, ln = self._assigned(e, ectx)
                    value, ln2 = self.project(v, suffix)
                    lines, is_module = ln | ln2 | {e.stmt.lineno}, False
                elif e.kind == "aug":
                    rhs, ln = self.canon(e.value, ectx)
                    rhs, ln2 = self._over(inner, rhs, ectx)
                    value = _binop(str(value), e.op, rhs)  # x op= y is x = x op y
                    lines = lines | ln | ln2 | {e.stmt.lineno}
                elif not is_module:
                    desc, ln = self._mutation(e, value, ectx)
                    lines = lines | ln | {e.stmt.lineno}
                    if desc is not None:
                        desc, ln2 = self._over(inner, desc, ectx) if inner else (desc, frozenset())
                        value, lines = desc, lines | ln2
            return (value if value is not None else key), lines
        finally:
            self._active.discard(guard)

    def _assigned(self, e: _Event, ctx: Ctx) -> tuple[str, frozenset[int]]:
        if e.kind == "loopvar":
            v, lines = self.canon(e.value, ctx)
            v = f"ITEM({v})"
        elif e.index is not None and isinstance(e.value, (ast.Tuple, ast.List)) and e.index < len(e.value.elts):
            return self.canon(e.value.elts[e.index], ctx)
        else:
            v, lines = self.canon(e.value, ctx)
        if e.index is not None and v != MODEL:  # any part of the model's output is the model's output
            v = f"{v}[{e.index}]"
        return v, lines

    def _over(self, loops: list[ast.AST], value: str, ctx: Ctx) -> tuple[str, frozenset[int]]:
        lines: frozenset[int] = frozenset()
        for lp in reversed(loops):
            head = lp.iter if isinstance(lp, (ast.For, ast.AsyncFor)) else lp.test
            h, ln = self.canon(head, Ctx(ctx.scope, lp, ctx.bindings, ctx.module_stmt))
            value, lines = f"LOOP[{h}]({value})", lines | ln | {lp.lineno}
        return value, lines

    def _mutation(self, e: _Event, value: str | None, ctx: Ctx) -> tuple[str | None, frozenset[int]]:
        node = e.value
        if isinstance(node, ast.AugAssign):  # x[i] += ... with a non-constant index
            rhs, lines = self.canon(node.value, ctx)
            return f"({value}[*] {_OPS.get(type(node.op), '?')}= {rhs})", lines
        if isinstance(node, ast.Subscript):
            return f"({value}[*] = ?)", frozenset()
        assert isinstance(node, ast.Call)
        fname = _callee_name(node.func)
        receiver = isinstance(node.func, ast.Attribute) and _key(node.func.value) == e.key
        if fname in _REDUCERS and not receiver:
            op = next((k.value for k in node.keywords if k.arg == "op"), node.args[1] if len(node.args) > 1 else None)
            opc, lines = self.canon(op, ctx) if op is not None else ("SUM", frozenset())
            if opc.endswith("ReduceOp.AVG"):
                # The mean over ranks commutes with the rest of the path (records move it before or after the
                # division): it is kept out of the path string and noted on the side, as a line marker.
                return None, frozenset({AVERAGED})
            return f"ALLREDUCE[{opc}]({value})", lines
        others = [a for a in node.args if _key(a) != e.key] if not receiver else list(node.args)
        args, lines = self._many(others + [k.value for k in node.keywords], ctx)
        if receiver and fname in _INPLACE_OPS and len(args) == 1:
            return _binop(str(value), _INPLACE_OPS[fname], args[0]), lines
        func, ln = self.canon(node.func, ctx) if not receiver else (fname, frozenset())
        return f"{func}!({value}; {', '.join(args)})", lines | ln

    def call(self, node: ast.Call, ctx: Ctx) -> tuple[str, frozenset[int]]:
        if self._is_model_call(node):
            return MODEL, frozenset()
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in _PASS_METHODS and not node.args:
            return self.canon(f.value, ctx)
        if isinstance(f, ast.Name) and f.id in _PASS_FUNCS and len(node.args) == 1 and not node.keywords:
            return self.canon(node.args[0], ctx)
        func, lines = self.canon(f, ctx)
        if func == "int" and len(node.args) == 1 and self.canon(node.args[0], ctx)[0] == VAL:
            return VAL, frozenset()  # int() of the env string is the token count itself
        m = re.fullmatch(r"DEF (\w+)", func)
        if m and m.group(1) in self.functions:
            return self._inline(self.functions[m.group(1)], node, ctx)
        if m and m.group(1) in self.classes and not node.args and not node.keywords:
            return f"<INST {m.group(1)}>", lines
        args, ln = self._many(list(node.args), ctx)
        kw, ln2 = self._many([k.value for k in node.keywords], ctx)
        lines |= ln | ln2
        if func == "range" and len(args) == 3 and VAL in args[1]:
            args = args[:2]  # the stride over a <VAL>-derived length is the batch: free, like <VAL> // batch
        kws = sorted(f"{k.arg}={v}" for k, v in zip(node.keywords, kw))
        return f"{func}({', '.join(args + kws)})", lines

    def _inline(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, call: ast.Call,
                ctx: Ctx) -> tuple[str, frozenset[int]]:
        """A call of the script's own function is its return value, its parameters bound to the arguments."""
        guard = ("fn", fn.name)
        body_nodes = [n for n in walk_scope(fn)]
        if guard in self._active or any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in body_nodes):
            args, lines = self._many(list(call.args), ctx)
            return f"GEN {fn.name}({', '.join(args)})", lines
        self._active.add(guard)
        try:
            params = _params(fn)
            bindings: dict[str, tuple[str, frozenset[int]]] = {}
            for p, a in zip(params, call.args):
                bindings[p] = self.canon(a, ctx)
            for k in call.keywords:
                if k.arg in params:
                    bindings[k.arg] = self.canon(k.value, ctx)
            module_stmt = ctx.module_stmt if not isinstance(ctx.scope, ast.Module) else ctx.stmt
            rets = [n for n in body_nodes if isinstance(n, ast.Return)]
            outs, lines = [], frozenset({fn.lineno})
            for r in rets:
                c, ln = self.canon(r.value, Ctx(fn, r, bindings, module_stmt))
                outs.append(c)
                lines |= ln | {r.lineno}
            return (outs[0] if len(set(outs)) == 1 else f"ANY({' | '.join(sorted(set(outs)))})"), lines
        finally:
            self._active.discard(guard)


def _binop(left: str, op: str, right: str) -> str:
    if op == "//" and VAL in left:
        return f"<VALDIV({left})>"  # the number of validation steps; the batch it divides by is free
    if op in _COMMUTATIVE:
        left, right = sorted((left, right))
    return f"({left} {op} {right})"


def _key(node: ast.AST) -> str | None:
    """`name`, `name.attr...` or `name[const]...` for a target/reference the flow tracks, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _key(node.value)
        return f"{base}.{node.attr}" if base is not None else None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
            and isinstance(node.slice.value, (int, str)):
        base = _key(node.value)
        return f"{base}[{node.slice.value!r}]" if base is not None else None
    return None


def _prefixes(key: str) -> list[str]:
    parts = re.findall(r"^[^.\[]+|\.[A-Za-z_]\w*|\[[^\]]*\]", key)
    return ["".join(parts[: i + 1]) for i in range(len(parts))]


def _callee_name(func: ast.AST) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = fn.args
    return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]


def _env_name(node: ast.AST) -> str | None:
    """The variable name of an env read (`os.environ["X"]`, `os.environ.get("X", d)`, `os.getenv("X")`)."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
            and "environ" in ast.unparse(node.value):
        return str(node.slice.value)
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
            and isinstance(node.args[0].value, str) and re.search(r"environ\.get$|getenv$", ast.unparse(node.func)):
        return node.args[0].value
    return None


def _walk_expr(stmt: ast.stmt):
    """Expression nodes of a statement, not those of nested statements."""
    stack = [c for c in ast.iter_child_nodes(stmt) if not isinstance(c, ast.stmt)]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(c for c in ast.iter_child_nodes(node) if not isinstance(c, ast.stmt))


def walk_scope(fn: ast.AST):
    """All nodes of a function body, not those of nested functions and classes."""
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))
