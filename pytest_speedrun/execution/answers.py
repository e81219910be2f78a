"""Where answers live on disk: what a sandboxed agent or run must not read (bwrap masks it, see sandbox.py).

Found from what the harness itself knows, never by file names: the cache directories (the pinned record
downloads, calibration workspaces holding copies of the start and target records, LLM response caches, compile
caches built while running the records), the results store (every item's solutions and logs), the suite
directories (records and hints of all levels), every installed copy of this distribution (its packaged suites,
and the source tree or wheel it was installed from), an external hints directory, a Slurm job folder, and the
git directory of any work tree that holds one of these (a checkout's objects hold every version of its
records, and of any results committed). The item's own workspace is exempt: it is mounted over the masked
results store.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from importlib.metadata import distributions
from pathlib import Path
from urllib.parse import unquote, urlparse

from pytest_speedrun.errors import SpeedrunError
from pytest_speedrun.judging.leaks import forbidden_paths
from pytest_speedrun.settings import Settings, default_cache_dir
from pytest_speedrun.tasks.manifest import Task, find_suite, suite_dirs

DISTRIBUTION = "pytest-speedrun"
_PACKAGED_SUITES = "pytest_speedrun/suites"
_SOURCE_SUITES = "tasks"  # in a source tree (pyproject's force-include maps it to the packaged folder)


def session_answer_holders(settings: Settings) -> tuple[Path, ...]:
    """Every directory of the session that may hold an answer."""
    # The default cache too: an earlier session may have calibrated (copied the records) there.
    paths = [settings.cache_dir, default_cache_dir(), settings.results_dir, *suite_dirs(), *installed_copies()]
    for name in settings.suites:
        try:
            paths.append(find_suite(name))
        except SpeedrunError:  # collection reports a bad suite; masking needs only the ones that exist
            continue
    if settings.hints_dir is not None:
        paths.append(settings.hints_dir)
    if settings.slurm is not None and settings.slurm.folder is not None:
        paths.append(settings.slurm.folder)
    return _with_git_dirs(paths)


def task_answer_holders(task: Task) -> tuple[Path, ...]:
    """What holds the answer of one task: its suite directory, its target script, every hint file (the hints
    given are copied into the workspace), and the git directory of the work tree the suite is in. This also
    covers suites collected from path arguments rather than named by --speedrun-suite."""
    return _with_git_dirs(forbidden_paths(task, ()) + [p.parent for p in task.hints.values()])


def installed_copies() -> list[Path]:
    """Where each installed copy of this distribution keeps the suites: its packaged suites folder (a wheel
    install, or the copy an editable build left in site-packages), and what it was installed from, as its PEP 610
    `direct_url.json` records: a local source tree's `tasks/`, or a local wheel file. Also any
    `pytest_speedrun/suites` folder that no installed distribution lists any more (a copy an earlier build left
    behind).

    Searched in every library folder a sandboxed process could read (`library_dirs`), not only on this
    interpreter's sys.path: a venv's base Python, shown for its standard library, may hold a copy in its own
    site-packages that the venv never imports."""
    libraries = library_dirs()
    found = [lib / _PACKAGED_SUITES for lib in libraries if (lib / _PACKAGED_SUITES).is_dir()]
    for dist in distributions(name=DISTRIBUTION, path=[str(lib) for lib in libraries]):
        if any(str(f).startswith(_PACKAGED_SUITES + "/") for f in dist.files or ()):
            found.append(Path(str(dist.locate_file(_PACKAGED_SUITES))))
        found += _installed_from(dist.read_text("direct_url.json"))
    return list(dict.fromkeys(found))


# Where a Python prefix keeps installed packages (CPython, Debian's dist-packages, /usr/local layouts).
_LIBRARY_GLOBS = ("lib*/python3*/site-packages", "lib*/python3*/dist-packages", "lib/python3/dist-packages",
                  "local/lib/python3*/site-packages", "local/lib/python3*/dist-packages")


def python_prefixes() -> list[Path]:
    """The Python installations a sandboxed process can see: this interpreter's prefixes (a venv's base
    included, which the sandbox shows for its standard library), the system's (/usr, /usr/local) and those under
    /opt (an installer's or conda's base and environments). Other top-level folders are hidden by the sandbox."""
    prefixes = [Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)]
    prefixes += [Path("/usr"), Path("/usr/local")]
    opt = Path("/opt")
    prefixes += [*opt.glob("*"), *opt.glob("*/envs/*")] if opt.is_dir() else []
    return list(dict.fromkeys(p for p in prefixes if p.is_dir()))


def library_dirs(prefixes: Iterable[Path] | None = None) -> list[Path]:
    """sys.path's folders and every package library folder of `prefixes` (default: python_prefixes())."""
    found = [Path(e) for e in sys.path if e and Path(e).is_dir()]
    for prefix in python_prefixes() if prefixes is None else prefixes:
        for pattern in _LIBRARY_GLOBS:
            found += [lib for lib in prefix.glob(pattern) if lib.is_dir()]
    return list(dict.fromkeys(found))


def _installed_from(direct_url: str | None) -> list[Path]:
    try:
        info = json.loads(direct_url or "{}")
    except ValueError:
        return []
    url = urlparse(str(info.get("url", "")))
    if url.scheme != "file":
        return []
    path = Path(unquote(url.path))
    if "dir_info" in info:
        return [path / _SOURCE_SUITES]
    return [path] if "archive_info" in info else []


def git_dirs(path: Path) -> list[Path]:
    """The git directory (and, for a linked work tree, the repository's common directory) of the work tree
    holding `path`; [] when it is in none."""
    for folder in (path, *path.parents):
        dotgit = folder / ".git"
        if dotgit.is_dir():
            return [dotgit]
        if dotgit.is_file():  # a linked work tree or submodule: "gitdir: <path>"
            text = dotgit.read_text(encoding="utf-8", errors="replace").strip()
            if not text.startswith("gitdir:"):
                return [dotgit]
            gitdir = (folder / text.removeprefix("gitdir:").strip()).resolve()
            common = gitdir / "commondir"
            found = [dotgit, gitdir]
            if common.is_file():
                found.append((gitdir / common.read_text(encoding="utf-8").strip()).resolve())
            return found
    return []


def _with_git_dirs(paths: Iterable[Path]) -> tuple[Path, ...]:
    out: set[Path] = set()
    for path in paths:
        path = Path(path).expanduser().resolve()
        out.add(path)
        out.update(git_dirs(path if path.is_dir() else path.parent))
    return tuple(sorted(out, key=str))
