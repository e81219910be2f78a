"""Execution: running a script under the harness. The runner and its pump (log, timeline, CPU accounting, death with
the session), cores and GPUs (resources), the sandbox and the answer holders it masks, the Slurm launcher, the
runtimes (which interpreter a task's runs use, building one with uv, the compat probes), and the doctor.
"""

from pytest_speedrun.files import lazy_exports

__all__ = [
    "Lease",
    "LeasePool",
    "RunOutcome",
    "RunSpec",
    "RuntimeChoice",
    "RuntimeChooser",
    "Sandbox",
    "SlurmConfig",
    "SlurmLauncher",
    "cpu_threads",
    "discover_gpus",
    "end_orphans",
    "kill_run",
    "probe",
    "run",
    "build_runtime",
    "run_compat_probes",
    "run_cores",
]

__getattr__ = lazy_exports(__name__, {
    "Lease": "resources",
    "LeasePool": "resources",
    "RunOutcome": "runner",
    "RunSpec": "runner",
    "RuntimeChoice": "runtime",
    "RuntimeChooser": "runtime",
    "Sandbox": "sandbox",
    "SlurmConfig": "slurm",
    "SlurmLauncher": "slurm",
    "cpu_threads": "resources",
    "discover_gpus": "resources",
    "end_orphans": "runner",
    "kill_run": "runner",
    "probe": "sandbox",
    "run": "runner",
    "build_runtime": "runtime_build",
    "run_compat_probes": "compat_probe",
    "run_cores": "resources",
})
