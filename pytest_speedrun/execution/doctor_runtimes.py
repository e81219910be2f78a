"""The doctor's torch-compatibility verdict: one row per runtime the selected tasks name, apart from the CUDA and
GPU rows. Each says which tasks run on which interpreter (built, mapped, or this one where its probes pass),
which run with a compat fix, and which need the runtime built, by the same decision the items make
(`execution/runtime.RuntimeChooser.choose`): the doctor never predicts one thing and the session do another.

The probes test behaviour, not version numbers: the FP8 records' probe compiles a custom op with a registered
fake through a backward pass (`execution/compat_probe.py`).
"""

from __future__ import annotations

import re

from pytest_speedrun.errors import MissingInput, SpeedrunError
from pytest_speedrun.judging.status import BUILT, CURRENT, MAPPED
from pytest_speedrun.tasks.fetch import resolve_task
from pytest_speedrun.tasks.manifest import Task
from pytest_speedrun.tasks.runtimes import Runtime, task_runtime

OK, WARN, FAIL = "ok", "warn", "FAIL"  # the doctor's row statuses (doctor.py spells the same)
# The oldest Linux driver each CUDA major runs on (minor-version compatibility): NVIDIA's CUDA release notes.
MIN_DRIVER = {11: (450, 80), 12: (525, 60), 13: (580, 65)}


def task_ranges(ids: list[str]) -> str:
    """`task01–task05, task07, task09–task11` for ids that run on consecutively in the suite's order."""
    def number(task_id: str) -> tuple[str, int] | None:
        m = re.fullmatch(r"(.*?)(\d+)", task_id)
        return (m.group(1), int(m.group(2))) if m else None

    spans: list[list[str]] = []
    for task_id in ids:
        last = spans[-1][-1] if spans else None
        a, b = (number(last) if last else None), number(task_id)
        if a and b and a[0] == b[0] and b[1] == a[1] + 1:
            spans[-1].append(task_id)
        else:
            spans.append([task_id])
    return ", ".join(s[0] if len(s) == 1 else f"{s[0]}–{s[-1]}" for s in spans)


def driver_supports(driver: str, cuda: str) -> bool | None:
    """Whether an NVIDIA driver version runs a torch built for `cuda` (None when either is unreadable)."""
    try:
        major = int(cuda.split(".")[0])
        parts = tuple(int(x) for x in driver.split(".")[:2])
    except ValueError:
        return None
    need = MIN_DRIVER.get(major)
    return None if need is None else parts >= need


def _outcome(chooser, task: Task, cache_dir) -> tuple[str, str]:
    """(status, how this task runs) by the items' own decision."""
    try:
        resolved = resolve_task(task, cache_dir)
    except MissingInput:
        return WARN, "records not cached: which compat fixes apply is unknown (pytest-speedrun fetch records)"
    try:
        choice = chooser.choose(resolved)
    except MissingInput as exc:
        return FAIL, str(exc).split(": ", 1)[-1]
    except SpeedrunError as exc:
        return FAIL, str(exc)
    where = {BUILT: "built runtime", MAPPED: "mapped interpreter", CURRENT: "this interpreter"}.get(choice.kind,
                                                                                                  "--python")
    how = f"{where} ({choice.python}, torch {choice.torch or '?'})"
    if choice.compat:
        how += f", compat fix {', '.join(choice.compat)}"
    elif choice.kind == CURRENT:
        how += ", probes passed"
    return OK, how


def cuda_row(runtime: Runtime, gpus: list) -> tuple[str, str] | None:
    """A warning when the runtime's CUDA cannot drive the GPUs present (None when it can, or no GPU is seen)."""
    if not runtime.cuda or not gpus:
        return None
    ok = driver_supports(gpus[0].driver, runtime.cuda)
    if ok is False:
        return (WARN, f"its torch is built for CUDA {runtime.cuda}, which driver {gpus[0].driver} cannot run "
                      f"(CUDA {runtime.cuda.split('.')[0]} needs driver "
                      f"{'.'.join(map(str, MIN_DRIVER[int(runtime.cuda.split('.')[0])]))}+)")
    return None


def check_runtimes(tasks: list[Task], chooser, cache_dir, gpus: list) -> list[tuple[str, str, str, str]]:
    """One row per runtime the tasks name: (name, status, detail, fix) tuples for doctor.Check."""
    by_runtime: dict[str, tuple[Runtime, list[Task]]] = {}
    for task in tasks:
        runtime = task_runtime(task)
        if runtime is not None:
            by_runtime.setdefault(runtime.name, (runtime, []))[1].append(task)
    rows = []
    for name, (runtime, its_tasks) in sorted(by_runtime.items()):
        groups: dict[tuple[str, str], list[str]] = {}
        for task in its_tasks:
            groups.setdefault(_outcome(chooser, task, cache_dir), []).append(task.id)
        status = FAIL if any(s == FAIL for s, _ in groups) else WARN if any(s == WARN for s, _ in groups) else OK
        detail = "; ".join(f"{task_ranges(ids)}: {how}" for (_, how), ids in groups.items())
        fix = ""
        if status != OK or any(k[1].startswith("this interpreter") for k in groups):
            wheel = " --wheel TORCH_WHEEL" if runtime.user_wheel else ""
            fix = f"the faithful runtime: pytest-speedrun runtime build {name}{wheel}"
        cuda = cuda_row(runtime, gpus)
        if cuda is not None:
            status = FAIL if status == FAIL else WARN
            detail += "; " + cuda[1]
            fix = fix or "update the driver, or build the runtime with an older CUDA variant"
        rows.append((f"runtime {name}", status, detail, fix))
    return rows
