"""Optional isolation of training runs and `command:` agents: `--speedrun-sandbox=none|netns|bwrap`.

* `netns`: a new network namespace (util-linux `unshare`, with a user namespace when not root) with only a
  loopback interface, brought up with `ip`, so torchrun's local rendezvous still works. No network access;
  the file system is not restricted.
* `bwrap`: bubblewrap. No network (loopback only), its own process namespace (so the harness's processes, and
  through `/proc` their files, are out of sight), the whole file system read-only except the workspace and a
  private /tmp, devices passed through (GPUs keep working), the data directory read-only even for root, and
  every directory that holds an answer (`masked`, see answers.py) replaced by an empty one.

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

from .errors import UsageError

KINDS = ("none", "netns", "bwrap")

# What a sandboxed process sees at a path (bwrap): nothing, the host's file read-only, or read-write.
_HIDE, _READ, _WRITE = "hide", "read", "write"


@dataclass(frozen=True)
class Sandbox:
    kind: str
    available: bool
    why_not: str = ""
    masked: tuple[Path, ...] = ()  # the session's answer holders, empty in every bwrap process (answers.py)
    agent_network: bool = False  # --speedrun-agent-network: agent processes keep the host's network

    def configured(self, masked: Iterable[Path] = (), agent_network: bool = False) -> Sandbox:
        """This sandbox, hiding `masked` from every process it starts, and with the agents' network setting."""
        return replace(self, masked=tuple(sorted(set(masked), key=str)), agent_network=agent_network)

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
        return ("sandbox: bwrap (no network; read-only file system except the workspace and a private /tmp; "
                "records, hints, caches and results hidden)")

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

        `workspace` and `writable` are read-write, `read_only` (with the Python environment) stays visible,
        and `masked` (with the sandbox's own `masked`) is hidden; with bwrap, the most specific path decides,
        so data kept inside a masked cache stays visible and suites masked inside a kept environment stay
        hidden. `network` keeps the host's network (agents that call an API)."""
        if self.kind == "none" or not self.available:
            return []
        if self.kind == "netns":
            return [] if network else _netns_prefix()
        args = ["bwrap", "--die-with-parent", "--unshare-pid", *([] if network else ["--unshare-net"]),
                "--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc"]
        keep = (Path(sys.prefix), Path(sys.base_prefix), *read_only)
        # The private /tmp hides whatever lived there: what a run needs from it (a venv under /tmp, the data)
        # comes back as a kept path.
        args += _mounts(_view(workspace, keep, (Path("/tmp"), *self.masked, *masked), tuple(writable)))
        return args + ["--chdir", str(workspace), "--"]


def _view(workspace: Path, keep: Iterable[Path], hide: Iterable[Path], writable: tuple[Path, ...]) -> dict[Path, str]:
    """Path -> what the sandbox shows there. Paths that do not exist are left out. Nothing inside the workspace
    is hidden: its files were put there for the process (and the leak scan checks them). A path named twice
    is shown rather than hidden, and writable rather than read-only."""
    ws = workspace.resolve()
    view: dict[Path, str] = {}
    for what, paths in ((_HIDE, hide), (_READ, keep), (_WRITE, (ws, *writable))):
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
