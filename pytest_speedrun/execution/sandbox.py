"""Optional isolation of training runs and `command:` agents: `--speedrun-sandbox=none|netns|bwrap`.

* `netns`: a new network namespace (util-linux `unshare`, with a user namespace when not root) with only a
  loopback interface, brought up with `ip`, so torchrun's local rendezvous still works. No network access;
  the file system is not restricted.
* `bwrap`: bubblewrap. No network (loopback only), its own process namespace (so the harness's processes, and
  through `/proc` their files, are out of sight), devices passed through (GPUs keep working), and a file
  system the process gets to see *by allow-list*:
  - the operating system's directories (SYSTEM_ROOTS: /usr, /etc, /opt, /var, ...) read-only;
  - the Python environment (its prefixes and every sys.path entry), this package, the directory pytest was
    started from, the data and what the caller keeps (an agent's own install), read-only;
  - the workspace and the caller's writable paths read-write;
  - a private, empty /tmp and /var/tmp, and every other top-level directory (/home, /root, /work, /srv, /mnt,
    ...) replaced by an empty one: a copy of the records in another checkout or a download folder is out of
    sight without the harness having to know of it;
  - every directory that holds an answer (`masked`, see answers.py) replaced by an empty one, also inside
    the kept paths (the suites of a source checkout pytest runs from, its git directory).

Availability is probed once by running `true` inside the sandbox; when the probe fails, `describe()` says in one
line what is *not* isolated and runs go ahead unsandboxed (the plugin prints that line in the header).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from pytest_speedrun.errors import UsageError
from pytest_speedrun.files import PACKAGE_DIR

KINDS = ("none", "netns", "bwrap")

# What a sandboxed process sees at a path (bwrap): nothing, the host's file read-only, or read-write.
_HIDE, _READ, _WRITE = "hide", "read", "write"

# Top-level directories of the operating system, shown read-only; every other one is hidden unless kept.
SYSTEM_ROOTS = frozenset({"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "opt", "var", "dev",
                          "proc", "sys", "run", "boot", "nix", "gnu", "snap"})
# World-writable scratch inside the system directories: private (empty) like /tmp.
_SCRATCH = (Path("/tmp"), Path("/var/tmp"))


@dataclass(frozen=True)
class Sandbox:
    kind: str
    available: bool
    why_not: str = ""
    masked: tuple[Path, ...] = ()  # the session's answer holders, empty in every bwrap process (answers.py)
    agent_network: bool = False  # --speedrun-agent-network: agent processes keep the host's network
    kept: tuple[Path, ...] = ()  # shown read-only to every process, on top of the environment (see prefix)

    def configured(self, masked: Iterable[Path] = (), agent_network: bool = False,
                   kept: Iterable[Path] = ()) -> Sandbox:
        """This sandbox, hiding `masked` from every process it starts, showing `kept` read-only, and with the
        agents' network setting."""
        return replace(self, masked=tuple(sorted(set(masked), key=str)), agent_network=agent_network,
                       kept=tuple(sorted(set(kept), key=str)))

    def outside_masks(self, paths: Iterable[Path], masked: Iterable[Path] = ()) -> tuple[Path, ...]:
        """`paths` less those inside (or equal to) a masked path: for paths a program asks to see, where a mask
        must win even over a more specific path (an agent naming the cached record on its command line)."""
        holders = [m.resolve() for m in (*self.masked, *masked)]
        return tuple(p for p in paths if not any(h == p.resolve() or h in p.resolve().parents for h in holders))

    @property
    def hides_answers(self) -> bool:
        return self.kind == "bwrap" and self.available

    def describe(self) -> str:
        if self.kind == "none":
            return "sandbox: none (runs have network access and can write anywhere the user can)"
        if not self.available:
            return (f"sandbox: {self.kind} unavailable ({self.why_not}); runs are NOT isolated: they have network "
                    "access and can write anywhere the user can")
        if self.kind == "netns":
            return "sandbox: netns (no network; the file system is not restricted)"
        return ("sandbox: bwrap (no network; only the system, the Python environment, the data and the workspace "
                "visible; records, hints, caches and results hidden)")

    def exposure(self, agent_network: bool) -> str | None:
        """One line for the summary when the agent could have read (or downloaded) an answer; None otherwise."""
        if not self.hides_answers:
            return ("answers were readable: without --speedrun-sandbox=bwrap the agent and its runs can read the "
                    "target records, other levels' hints, the record cache and other items' results "
                    "(docs/integrity.md)")
        if agent_network:
            return ("answers were downloadable: the agent's processes had the network (for its API) and the "
                    "records are public (docs/integrity.md)")
        return None

    def prefix(self, workspace: Path, read_only: Iterable[Path] = (), masked: Iterable[Path] = (),
               writable: Iterable[Path] = (), network: bool = False) -> list[str]:
        """The command prefix that runs a command inside the sandbox (empty when not isolating).

        `workspace` and `writable` are read-write, `read_only` (with the Python environment, the sandbox's
        `kept` and the operating system's directories) stays visible, everything else is hidden, and so is
        `masked` (with the sandbox's own `masked`); with bwrap, the most specific path decides, so data kept
        inside a masked cache stays visible and suites masked inside a kept environment stay hidden.
        `network` keeps the host's network (agents that call an API)."""
        if self.kind == "none" or not self.available:
            return []
        if self.kind == "netns":
            return [] if network else _netns_prefix()
        args = ["bwrap", "--die-with-parent", "--unshare-pid", *([] if network else ["--unshare-net"]),
                "--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc"]
        keep = (*environment_paths(), *self.kept, *read_only)
        # The private scratch and the hidden top-level directories hide whatever lived there: what a run needs
        # from them (a venv under /tmp or /home, the data) comes back as a kept path.
        args += _mounts(_view(workspace, keep, (*self.masked, *masked), tuple(writable),
                              private=(*_SCRATCH, *private_roots())))
        return args + ["--chdir", str(workspace), "--"]


def environment_paths() -> tuple[Path, ...]:
    """What every sandboxed process needs to see: the interpreter's prefixes, every sys.path entry (a user
    site, PYTHONPATH, the source tree of an editable install), this package (the pump runs from it), and the
    directory pytest was started from (where a `command:` agent's files usually are)."""
    package = PACKAGE_DIR
    entries = [Path(e) for e in sys.path if e]
    return (Path(sys.prefix), Path(sys.base_prefix), package, Path.cwd(), *entries)


def private_roots(root: Path = Path("/")) -> tuple[Path, ...]:
    """The top-level directories outside SYSTEM_ROOTS (home directories, work trees, mounts): hidden unless a
    kept path lies in them. A top-level link into a system directory (/lib -> usr/lib) is left alone."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return ()
    found = []
    for entry in entries:
        if entry.name in SYSTEM_ROOTS or not entry.is_dir():
            continue
        target = entry.resolve()
        if target.parent == root.resolve() and target.name in SYSTEM_ROOTS:
            continue
        found.append(entry)
    return tuple(found)


def _view(workspace: Path, keep: Iterable[Path], hide: Iterable[Path], writable: tuple[Path, ...],
          private: Iterable[Path] = ()) -> dict[Path, str]:
    """Path -> what the sandbox shows there. Paths that do not exist are left out. Nothing inside the workspace
    is hidden: its files were put there for the process (and the leak scan checks them). For a path named in
    more than one class, the later class wins: `private` (hidden by default) < `keep` < `hide` (answer holders:
    a sys.path entry that is itself a suite folder stays hidden) < workspace and `writable`."""
    ws = workspace.resolve()
    view: dict[Path, str] = {}
    for what, paths in ((_HIDE, private), (_READ, keep), (_HIDE, hide), (_WRITE, (ws, *writable))):
        for path in paths:
            if not path.exists():
                continue
            path = path.resolve()
            if what == _HIDE and (path == ws or ws in path.parents):
                continue
            view[path] = what
    return view


def _mounts(view: dict[Path, str]) -> list[str]:
    """bwrap arguments that realise `view` over a read-only `/`. Mounts go parents first, so a deeper path
    overrides its parent's treatment; a path treated like its nearest listed parent needs no mount (and a
    hidden directory so gets no empty mount points for the hidden files inside it)."""
    args: list[str] = []
    for path in sorted(view, key=lambda p: (len(p.parts), str(p))):
        inherited = next((view[p] for p in path.parents if p in view), _READ)
        what = view[path]
        if what == inherited:
            continue
        if what == _HIDE:
            args += ["--tmpfs", str(path)] if path.is_dir() else ["--ro-bind", "/dev/null", str(path)]
        else:
            args += ["--bind" if what == _WRITE else "--ro-bind", str(path), str(path)]
    return args


def _netns_prefix() -> list[str]:
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    return ["unshare", "--net", *user, "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sandboxed"]


@cache
def probe(kind: str) -> Sandbox:
    """A Sandbox of `kind`, available only if a trivial command actually runs inside it here."""
    if kind not in KINDS:
        raise UsageError(f"--speedrun-sandbox={kind}: unknown sandbox; use one of {', '.join(KINDS)}")
    if kind == "none":
        return Sandbox("none", True)
    tool = "unshare" if kind == "netns" else "bwrap"
    if shutil.which(tool) is None or (kind == "netns" and shutil.which("ip") is None):
        missing = tool if shutil.which(tool) is None else "ip (iproute2)"
        return Sandbox(kind, False, f"{missing} not found")
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    probe_sb = Sandbox(kind, True)
    try:
        proc = subprocess.run([*probe_sb.prefix(tmp), "true"], capture_output=True, timeout=30, text=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Sandbox(kind, False, str(exc))
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[0]
        return Sandbox(kind, False, first[:160])
    return probe_sb
