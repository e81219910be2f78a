"""Execution: running a script under the harness. The runner and its pump (log, timeline, CPU accounting, death with
the session), cores and GPUs (resources), the sandbox and the answer holders it masks, the Slurm launcher, and the
doctor.
"""

from pytest_speedrun.files import lazy_exports

__all__ = [
    "Lease",
    "LeasePool",
    "RunOutcome",
    "RunSpec",
    "Sandbox",
    "SlurmConfig",
    "SlurmLauncher",
    "cpu_threads",
    "discover_gpus",
    "end_orphans",
    "kill_run",
    "probe",
    "run",
    "run_cores",
]

__getattr__ = lazy_exports(__name__, {
    "Lease": "resources",
    "LeasePool": "resources",
    "RunOutcome": "runner",
    "RunSpec": "runner",
    "Sandbox": "sandbox",
    "SlurmConfig": "slurm",
    "SlurmLauncher": "slurm",
    "cpu_threads": "resources",
    "discover_gpus": "resources",
    "end_orphans": "runner",
    "kill_run": "runner",
    "probe": "sandbox",
    "run": "runner",
    "run_cores": "resources",
})
