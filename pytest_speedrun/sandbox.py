"""Optional isolation of training runs: `--speedrun-sandbox=none|netns|bwrap`.

* `netns`: a new network namespace (util-linux `unshare`, with a user namespace when not root) with only a
  loopback interface, brought up with `ip`, so torchrun's local rendezvous still works. No network access;
  the file system is not restricted.
* `bwrap`: bubblewrap. No network (loopback only), the whole file system read-only except the workspace and a
  private /tmp, devices passed through (GPUs keep working), the data directory read-only even for root.

Availability is probed once by running `true` inside the sandbox; when the probe fails, `describe()` says in one
line what is *not* isolated and runs go ahead unsandboxed (the plugin prints that line in the header).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .errors import UsageError

KINDS = ("none", "netns", "bwrap")


@dataclass(frozen=True)
class Sandbox:
    kind: str
    available: bool
    why_not: str = ""

    def describe(self) -> str:
        if self.kind == "none":
            return "sandbox: none (runs have network access and can write anywhere the user can)"
        if not self.available:
            return (f"sandbox: {self.kind} unavailable ({self.why_not}); runs are NOT isolated: they have network "
                    "access and can write anywhere the user can")
        if self.kind == "netns":
            return "sandbox: netns (no network; the file system is not restricted)"
        return "sandbox: bwrap (no network; read-only file system except the workspace and a private /tmp)"

    def prefix(self, workspace: Path, read_only: tuple[Path, ...] = ()) -> list[str]:
        """The command prefix that runs a command inside the sandbox (empty when not isolating)."""
        if self.kind == "none" or not self.available:
            return []
        if self.kind == "netns":
            return _netns_prefix()
        args = ["bwrap", "--die-with-parent", "--unshare-net", "--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev",
                "--proc", "/proc", "--tmpfs", "/tmp", "--bind", str(workspace), str(workspace)]
        # The private /tmp hides whatever lived there: bring back what a run needs (its Python environment,
        # which may be a venv under /tmp, and the data).
        keep = {Path(sys.prefix), Path(sys.base_prefix), *read_only}
        for path in sorted(p for p in keep if p.exists()):
            args += ["--ro-bind", str(path), str(path)]
        return args + ["--chdir", str(workspace), "--"]


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
