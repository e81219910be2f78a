"""Which Python files a run executes from its folder: the script and everything it runs from beside it.

A solution is not one file: a record from 2026 on brings `triton_kernels.py`, and an agent may move anything
into a module of its own. Every source rule (env contract, val path, near-copy, the echoed-source rule of the log
parser) therefore judges the script *with* the files it runs, found statically from the script:

* `import a.b` and `from a import b` (relative ones too) that resolve to `a/b.py` or `a/b/__init__.py` in the
  folder, and the packages on the way;
* any string literal that names a file of the folder (`"helpers.py"`, `"./pkg/mod.py"`) or one of its modules
  (`"helpers"`): `importlib.import_module("helpers")`, `__import__`, `exec(open("x.py").read())`,
  `runpy.run_path`, a subprocess running it;
* and, transitively, what those files run.

A file that runs code from a name the source does not spell (`import_module(name)`, `exec(code)`,
`runpy.run_path(path)` with a computed argument) makes every Python file of the folder count: the rules cannot
tell which one runs, so they judge them all. Unparsable files are kept (a rule skips what it cannot parse; the
run crashes on it anyway). The leak scan (leaks.py) reads every file of the folder regardless.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

# calls that run code from their first argument: builtins by name, library functions by attribute
_DYNAMIC_BUILTINS = {"__import__", "exec", "eval", "compile", "execfile", "import_module", "run_path", "run_module"}
_DYNAMIC_METHODS = {"import_module", "__import__", "run_path", "run_module", "spec_from_file_location",
                    "SourceFileLoader"}
_MAX_FILES = 200  # a folder holding more Python files than this is not a training script's: read the first ones
_MAX_BYTES = 4 * 1024 * 1024

Files = tuple[tuple[str, str], ...]  # (path relative to the folder, text), the script first


def module_name(rel: str) -> str:
    """`pkg/mod.py` -> `pkg.mod`, `pkg/__init__.py` -> `pkg`."""
    parts = rel[:-3].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _module_files(dotted: str, available: Mapping[str, str]) -> list[str]:
    """The folder's files that `import dotted` runs: the module and every package on the way."""
    parts = [p for p in dotted.split(".") if p]
    out = []
    for i in range(1, len(parts) + 1):
        stem = "/".join(parts[:i])
        out += [rel for rel in (f"{stem}.py", f"{stem}/__init__.py") if rel in available]
    return out


@lru_cache(maxsize=64)
def _references(rel: str, text: str) -> tuple[tuple[str, ...], bool]:
    """(module names and file names the source spells, whether it also runs code from a computed name)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return (), False
    here = rel.split("/")[:-1]
    names: list[str] = []
    dynamic = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the importing file's package
                up = here[: len(here) - (node.level - 1)] if node.level - 1 <= len(here) else []
                base = ".".join([*up, *([base] if base else [])])
            names += [base, *(f"{base}.{a.name}" if base else a.name for a in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 300:
            names.append(node.value)
        elif isinstance(node, ast.Call):
            f = node.func
            runs_code = (isinstance(f, ast.Name) and f.id in _DYNAMIC_BUILTINS) or (
                isinstance(f, ast.Attribute) and f.attr in _DYNAMIC_METHODS)
            if runs_code and node.args and not (
                    isinstance(node.args[0], ast.Constant) or _reads_literal_file(node.args[0])):
                dynamic = True
    return tuple(names), dynamic


def _reads_literal_file(node: ast.AST) -> bool:
    """`open("x.py").read()`, `Path("x.py").read_text()`: code from a file the source names (found by its
    literal), not from a computed name."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in {"read", "read_text"}:
        inner = node.func.value
        return isinstance(inner, ast.Call) and bool(inner.args) and isinstance(inner.args[0], ast.Constant)
    return False


def _spelled(name: str, available: Mapping[str, str]) -> list[str]:
    """The folder's files a name or string literal refers to."""
    path = name.strip().removeprefix("./")
    if path in available:
        return [path]
    if path.endswith(".py") or "/" in path or not path.replace(".", "").replace("_", "").isalnum():
        return []
    return _module_files(path, available)


def closure(script: str, available: Mapping[str, str]) -> Files:
    """The files of `available` (relative path -> text) that running `script` (one of them) runs, the script
    first and the rest in path order; all of them when one of the files runs code from a computed name."""
    seen, todo, dynamic = {script}, [script], False
    while todo:
        rel = todo.pop()
        names, dyn = _references(rel, available[rel])
        dynamic |= dyn
        for name in names:
            for found in _spelled(name, available):
                if found not in seen:
                    seen.add(found)
                    todo.append(found)
    if dynamic:
        seen = set(available)
    return ((script, available[script]), *((rel, available[rel]) for rel in sorted(seen - {script})))


def folder_files(folder: Path, skip: Iterable[str] = ()) -> dict[str, str]:
    """Every Python file under `folder` (relative path -> text), in path order, but those in `skip` (at most
    _MAX_FILES of them)."""
    files = _Folder(folder, skip)
    return {rel: files[rel] for rel in files}


class _Folder(Mapping[str, str]):
    """A folder's Python files, read only when asked for: the closure of a script in a large folder (a user's
    home, for `pytest-speedrun parse`) reads the files it imports, and lists the folder only when it must."""

    def __init__(self, folder: Path, skip: Iterable[str] = (), extra: Mapping[str, str] | None = None) -> None:
        self.folder, self.skip, self.extra = folder, set(skip), dict(extra or {})

    def _readable(self, rel: str) -> bool:
        path = self.folder / rel
        return rel not in self.skip and rel.endswith(".py") and ".." not in rel.split("/") \
            and not path.is_symlink() and path.is_file() and path.stat().st_size <= _MAX_BYTES

    def __getitem__(self, rel: str) -> str:
        if rel in self.extra:
            return self.extra[rel]
        if not self._readable(rel):
            raise KeyError(rel)
        return (self.folder / rel).read_text(encoding="utf-8", errors="replace")

    def __contains__(self, rel: object) -> bool:
        return isinstance(rel, str) and (rel in self.extra or self._readable(rel))

    def __iter__(self):
        found = set(self.extra)
        for path in self.folder.rglob("*.py"):
            if len(found) >= _MAX_FILES:
                break
            rel = path.relative_to(self.folder).as_posix()
            if rel not in found and rel in self:
                found.add(rel)
        return iter(sorted(found))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def run_files(folder: Path | None, script_name: str, script_text: str) -> Files:
    """The script (as `script_text`) and the files of `folder` it runs; just the script without a folder."""
    if folder is None or not folder.is_dir():
        return ((script_name, script_text),)
    return closure(script_name, _Folder(folder, skip=(script_name,), extra={script_name: script_text}))


def script_files(script: Path) -> Files:
    """The files a run of `script` executes from its own folder (the script first)."""
    return run_files(script.parent, script.name, script.read_text(encoding="utf-8", errors="replace"))


def run_source(script: Path) -> str:
    """The text of every file a run of `script` executes from its folder, joined: what the log parser's
    echoed-source rule reads (a line that appears verbatim in any of them is never a result)."""
    return "\n".join(text for _, text in script_files(script))


def companion_files(ref_files: Iterable[tuple[str, Path | None]], script_name: str, script_text: str) -> Files:
    """A record's script with the companion files it runs (name -> path, as a ScriptRef's `files` resolve)."""
    available = {name: path.read_text(encoding="utf-8", errors="replace")
                 for name, path in ref_files if path is not None and path.is_file() and name.endswith(".py")}
    available[script_name] = script_text
    return closure(script_name, available)
