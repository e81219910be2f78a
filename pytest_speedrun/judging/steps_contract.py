"""The optimization track's contract: what a steps-scored task fixes, checked on what the run actually did.

The track fixes the data, the batch size, the architecture (widths, depth, heads, vocabulary, context) and one
forward-backward pass per step. However a script spells a change (a literal, a renamed or computed value, a value
read from another file), the change shows in the tensors the run builds. So every run of a steps task carries a
recorder (steps_hook/sitecustomize.py, put first on the run's PYTHONPATH) that writes, per rank, the shapes of
the model's training inputs and parameters, the attention's query and key shapes, and how many training forward
passes and backward passes ran. The start record is probed once the same way, for its first STOP_AFTER passes
(cached per start script, interpreter and launch), and a solution's run is compared with it:

* training inputs, parameter shapes or attention shapes that differ from the start's are `tampered`, the reason
  naming what changed (batch size, context, heads, head width, the parameters gone and new);
* a run whose training forward passes or backward passes differ from its final step count N is `tampered`
  (gradient accumulation, or steps counted short);
* a run with a result but no record (the recorder was removed or the record deleted) is `tampered`;
* a solution that names the recorder's variables is `tampered` (it could write the record itself).

Suspicion on this track (`suspicious_reasons`): the time rules do not apply (the score does not use the time);
a step count below FAST_FRACTION of the target record's is `suspicious`, the steps analogue of the time rule.
The time track's "step count changed more than 3x while the time fell" rule is replaced: here each step is one
counted forward-backward pass, so a step count cannot hide work, and a large fall is the score itself.

Limits (docs/integrity.md, "Steps"): the recorder runs inside the script's own process, so a script written to
defeat it (restoring torch's functions, rewriting the record) can; attention is checked only where it runs
through scaled_dot_product_attention; a model called as several top-level modules per step counts as several
forward passes; the data's content is the data guard's and the env contract's to check, not this one's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from filelock import FileLock

from pytest_speedrun.errors import RunError
from pytest_speedrun.files import PACKAGE_DIR, write_atomic
from pytest_speedrun.judging.status import STEPS
from pytest_speedrun.tasks.manifest import Task

HOOK_DIR = PACKAGE_DIR / "judging" / "steps_hook"
RECORD_ENV = "SPEEDRUN_STEPS_RECORD"  # the folder the recorder writes rank<N>.json into
STOP_ENV = "SPEEDRUN_STEPS_STOP_AFTER"  # the start probe: exit after this many backward passes
RECORD_DIR = ".speedrun-steps"  # in the run's working directory (the one place a sandboxed run may write)
STOP_AFTER = 2
FAST_FRACTION = 0.4  # s' < 0.4 x s_(i+1): as implausible as the time track's t' < 0.4 x t_(i+1)
_DIMS = ("batch size", "context length")  # what the first two dimensions of a (batch, sequence) input are

Records = dict[int, dict]  # rank -> the recorder's record


def applies(task: Task) -> bool:
    return task.metric == STEPS


def run_env(task: Task, workdir: Path, env: dict[str, str]) -> dict[str, str]:
    """Variables a run of `task` gets on top of `env` (none for a time task): the recorder first on PYTHONPATH
    and its output folder, emptied first so nothing left in the workspace passes for the run's record."""
    if not applies(task):
        return {}
    out = workdir / RECORD_DIR
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    path = ":".join(p for p in (str(HOOK_DIR), env.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, RECORD_ENV: str(out)}


def record_dir(log_path: Path) -> Path:
    """Where a run's records are kept: beside its log."""
    return log_path.with_name(log_path.name + ".steps")


def collect(task: Task, workdir: Path, log_path: Path) -> None:
    """Move a finished run's records from its working directory to beside its log."""
    if not applies(task):
        return
    dest = record_dir(log_path)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for path in sorted((workdir / RECORD_DIR).glob("rank*.json")):
        shutil.move(str(path), dest / path.name)
    shutil.rmtree(workdir / RECORD_DIR, ignore_errors=True)


def read_records(folder: Path) -> Records:
    out: Records = {}
    for path in sorted(folder.glob("rank*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out[int(data.get("rank", 0))] = data
    return out


def start_records(task: Task, script: Path, cache_root: Path, launch_key: str,
                  run: Callable[[Path, Task, Path], object]) -> Records:
    """The start record's shapes: `run(script copy, probe task, log path)` runs it under the harness with the
    recorder and STOP_AFTER, once per (script, `launch_key`: interpreter, processes, data), cached in
    `cache_root`. RunError when the probe recorded nothing (the start script never trained)."""
    key_src = json.dumps({"script": hashlib.sha256(script.read_bytes()).hexdigest(), "launch": launch_key,
                          "env": task.launch.env, "hook": hashlib.sha256((HOOK_DIR / "sitecustomize.py")
                                                                        .read_bytes()).hexdigest()}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    cache_root.mkdir(parents=True, exist_ok=True)
    cached = cache_root / f"{key}.json"
    with FileLock(str(cached.with_suffix(".lock"))):
        try:
            return {int(k): v for k, v in json.loads(cached.read_text(encoding="utf-8")).items()}
        except (OSError, ValueError):
            pass
        work = cache_root / key
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        copy = work / "train_gpt2.py"
        shutil.copyfile(script, copy)
        probe = replace(task, launch=replace(task.launch, env={**task.launch.env, STOP_ENV: str(STOP_AFTER)}))
        log = work / "probe.log"
        run(copy, probe, log)
        records = read_records(record_dir(log))
        if not records:
            raise RunError(f"task {task.id}: the probe of the start record {script.name} recorded no training pass "
                           f"(its log: {log}); a steps task needs a start script that trains under the recorder")
        write_atomic(cached, json.dumps({str(k): v for k, v in records.items()}, sort_keys=True) + "\n")
        return records


def launch_key(python: str, nproc: int, data: str) -> str:
    return json.dumps([python or sys.executable, nproc, data])


# --- the comparison (pure: records in, reasons out) ---------------------------------------------------------

def _shapes(key: str) -> list[list[int]]:
    return json.loads(key)


def _fmt(shapes: list[list[int]]) -> str:
    return ", ".join("[" + ", ".join(str(d) for d in s) + "]" for s in shapes)


def _dims_changed(old: list[list[int]], new: list[list[int]], names: Sequence[str]) -> list[str]:
    """Which named dimensions differ between two equally long lists of shapes ("batch size 32 -> 16")."""
    changed: dict[str, str] = {}
    if len(old) == len(new):
        for a, b in zip(old, new):
            for i, name in enumerate(names):
                if i < len(a) and i < len(b) and a[i] != b[i]:
                    changed.setdefault(name, f"{name} {a[i]} -> {b[i]}")
    return list(changed.values())


def _inputs_reason(start: dict, run: dict) -> str | None:
    old, new = sorted(start.get("inputs", {})), sorted(run.get("inputs", {}))
    if not new or set(new) <= set(old):
        return None
    fresh = [k for k in new if k not in old]
    what = _dims_changed(_shapes(old[0]), _shapes(fresh[0]), _DIMS) if len(old) == 1 else []
    return (f"the model's training inputs changed: [{_fmt(_shapes(old[0]))}] in the start record, "
            f"[{_fmt(_shapes(fresh[0]))}] here" + (f" ({', '.join(what)})" if what else "")
            + ": the optimization track fixes the batch size and the context")


def _param_counter(rec: dict) -> Counter:
    out: Counter = Counter()
    for key, modules in rec.get("params", {}).items():
        for shape in _shapes(key):
            out[tuple(shape)] += modules
    return out


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _params_reason(start: dict, run: dict) -> str | None:
    old, new = _param_counter(start), _param_counter(run)
    if not new or old == new:
        return None
    gone, added = old - new, new - old

    def listing(c: Counter) -> str:
        return ", ".join(f"{n}x[{', '.join(map(str, s))}]" for s, n in sorted(c.items())) or "none"

    total = (sum(old.values()), sum(_size(s) * n for s, n in old.items()),
             sum(new.values()), sum(_size(s) * n for s, n in new.items()))
    return (f"the model's parameters changed: {total[0]} tensors of {total[1]:,} values in the start record, "
            f"{total[2]} of {total[3]:,} here (gone: {listing(gone)}; new: {listing(added)}): the optimization "
            "track fixes the architecture (widths, depth, heads, vocabulary, context)")


def _attention_reason(start: dict, run: dict) -> str | None:
    old, new = sorted(start.get("attention", {})), sorted(run.get("attention", {}))
    if not old or set(new) == set(old):
        return None
    if not new:
        return ("the attention no longer runs through torch's scaled_dot_product_attention, where the harness "
                "checks the heads the optimization track fixes")
    fresh = [k for k in new if k not in old] or new
    what = _dims_changed(_shapes(old[0])[:1], _shapes(fresh[0])[:1],
                         ("batch size", "heads", "context length", "head width"))
    return (f"the attention's query and key shapes changed: [{_fmt(_shapes(old[0]))}] in the start record, "
            f"[{_fmt(_shapes(fresh[0]))}] here" + (f" ({', '.join(what)})" if what else "")
            + ": the optimization track fixes the heads and their width")


def _passes_reasons(run: dict, steps: int) -> list[str]:
    out = []
    if run.get("forwards", 0) != steps:
        out.append(f"{run.get('forwards', 0)} training forward passes of the model for {steps} steps: the "
                   "optimization track allows one forward-backward pass per step")
    if run.get("backwards", 0) != steps:
        out.append(f"{run.get('backwards', 0)} backward passes for {steps} steps (gradient accumulation counts "
                   "as more than one): the optimization track allows one forward-backward pass per step")
    return out


def compare(start: dict, run: dict, steps: int | None) -> list[str]:
    """Reasons (tampered) why one rank's record of a run breaks the contract against the start record's."""
    reasons = [r for r in (_inputs_reason(start, run), _params_reason(start, run), _attention_reason(start, run))
               if r]
    return reasons + (_passes_reasons(run, steps) if steps is not None else [])


def run_reasons(start: Records, runs: Sequence) -> list[str]:
    """Tampered reasons over a solution's runs (Executions with a result); records read beside each log."""
    reasons: list[str] = []
    for i, ex in enumerate(runs):
        if ex.metrics is None:
            continue
        which = f"run {i + 1}: " if len(runs) > 1 else ""
        records = read_records(record_dir(ex.outcome.log_path))
        if not records:
            reasons.append(f"{which}the harness's record of the run's shapes and passes is missing (removed, or the "
                           "recorder was stopped): the optimization track's contract cannot be checked")
            continue
        for rank, rec in sorted(records.items()):
            where = which + (f"rank {rank}: " if len(records) > 1 else "")
            base = start.get(rank) or start.get(0) or {}
            reasons += [where + r for r in compare(base, rec, ex.metrics.steps)]
    return list(dict.fromkeys(reasons))


def source_reasons(solution_text: str) -> list[str]:
    names = [n for n in (RECORD_ENV, STOP_ENV, "sitecustomize") if n in solution_text]
    if not names:
        return []
    return [f"the solution names the harness's step recorder ({', '.join(names)}): it could write its own record"]


def suspicious_reasons(steps: float, val_loss: float, target_val_loss: float, s_target: int | None,
                       loss_margin: float) -> list[str]:
    """The steps track's suspicion: a step count far below the target record's, or a loss far below target."""
    reasons = []
    if s_target and steps < FAST_FRACTION * s_target:
        reasons.append(f"{steps:g} steps is below {FAST_FRACTION:g} x the next record's {s_target} steps")
    if val_loss < target_val_loss - loss_margin:
        reasons.append(f"val_loss {val_loss:.4f} is more than {loss_margin:g} below the target {target_val_loss:.4f}")
    return reasons
