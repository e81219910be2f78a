"""A real single-node Slurm cluster on this machine, for tests and benchmarks (Debian's slurm-wlm 22.05 + munge).

`start(root)` writes a minimal slurm.conf (one node with this machine's CPUs, select/cons_tres, free ports),
makes sure munged runs, starts slurmctld and slurmd as root and waits until the node is idle. It returns the
environment to use (with `SLURM_CONF`) and `stop(env)` shuts the cluster down. `unavailable()` says why a
cluster cannot start here (binaries missing, not root, no submitit), or returns None.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

BINARIES = ("slurmctld", "slurmd", "munged", "sbatch", "scancel", "squeue", "sinfo")


def unavailable() -> str | None:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"Slurm is not installed here ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    if importlib.util.find_spec("submitit") is None:
        return "submitit is not installed: pip install 'pytest-speedrun[slurm]'"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_munge() -> None:
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        shutil.chown(key, "munge", "munge")
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
        subprocess.run(["munged", "--force"], capture_output=True)


def start(root: Path, timeout_s: float = 90, gpus: int = 0) -> dict[str, str]:
    """Start the cluster with its state, spool and logs under `root`; raise RuntimeError if it does not come up.

    `gpus`: the node declares that many GPUs as a count-only GRES (no device files), so jobs can ask for GPUs
    (`--gpus-per-node`) and Slurm schedules them; nothing on this machine is a GPU."""
    _ensure_munge()
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    gres = f" Gres=gpu:{gpus}" if gpus else ""
    if gpus:  # character devices like /dev/null stand in for /dev/nvidiaN (Slurm wants a file per GPU)
        for i in range(gpus):
            dev = root / f"gpu{i}"
            if not dev.exists():
                os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        (root / "gres.conf").write_text(f"NodeName=localhost Name=gpu File={root}/gpu[0-{gpus - 1}]\n")
    conf.write_text(f"""ClusterName=speedruntest
{"GresTypes=gpu" if gpus else ""}
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=localhost CPUs={os.cpu_count()} RealMemory=4000{gres} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
    env = dict(os.environ, SLURM_CONF=str(conf))
    subprocess.run(["slurmctld", "-f", str(conf)], env=env, check=True)
    subprocess.run(["slurmd", "-f", str(conf), "-N", "localhost"], env=env, check=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
        if "idle" in out:
            return env
        time.sleep(1)
    stop(env)
    raise RuntimeError(f"the test Slurm cluster did not come up: {(root / 'log' / 'slurmctld.log').read_text()[-500:]}")


def stop(env: dict[str, str]) -> None:
    subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)


def queue(env: dict[str, str]) -> str:
    """squeue's lines (job id and state), empty when no job is pending or running."""
    return subprocess.run(["squeue", "-h", "-o", "%i %t"], env=env, capture_output=True, text=True).stdout.strip()
