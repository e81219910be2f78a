"""Every rule that judges a solution from its source alone, before or regardless of how it ran: one call.

* the env contract (contract.py): `tampered`;
* the near-copy rule (nearcopy.py): the solution is the target record's script up to comments, whitespace or
  renaming: `suspicious`;
* the val-path rule (valpath.py): the printed val_loss is not computed from the model's loss the way the start
  script computes it: `suspicious`.

The harness calls `static_reasons` for search nodes and final runs alike; suspicion only counts for runs that
passed (integrity.final_verdict).
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_speedrun.judging.contract import files_contract_reasons
from pytest_speedrun.judging.nearcopy import files_near_copy_reasons
from pytest_speedrun.judging.sources import companion_files
from pytest_speedrun.judging.valpath import files_val_path_reasons
from pytest_speedrun.tasks.manifest import ScriptRef, Task

Companions = Sequence[tuple[str, str]]  # (path relative to the script's folder, text): the other files a run runs


def static_reasons(start_text: str, solution_text: str, target_text: str | None,
                   script_name: str = "train_gpt2.py", *, start_files: Companions = (),
                   solution_files: Companions = (), target_files: Companions = ()) -> tuple[list[str], list[str]]:
    """(tampered, suspicious) reasons for `solution_text`, judged against the start script it was made from and
    the target record's script. Pass `target_text=None` where the target is no evidence: for trusted agents
    (the oracle hands over the target by design) or when the target script is not available locally.

    `*_files`: the other files each one runs from its folder (sources.py), judged with it: every rule covers
    every file of a solution, so moving validation or env handling into a module changes nothing."""
    start = ((script_name, start_text), *start_files)
    solution = ((script_name, solution_text), *solution_files)
    target = ((script_name, target_text), *target_files) if target_text else None
    tampered = files_contract_reasons(start, solution)
    suspicious = files_near_copy_reasons(solution, target, start)
    suspicious += files_val_path_reasons(start, solution)
    return tampered, suspicious


def record_companions(ref: ScriptRef, script_name: str, text: str | None) -> tuple[tuple[str, str], ...]:
    """The companion files a record's script runs (its ScriptRef's `files`, where on this machine), without
    the script itself."""
    if text is None or not ref.files:
        return ()
    return companion_files(((name, sub.path) for name, sub in ref.files), script_name, text)[1:]


def target_text(task: Task) -> str | None:
    """The target record's script as text, when it is on this machine (in-repo suites, or a fetched record
    once fetch.py has resolved the task to its cached copy)."""
    path = task.target.script.path
    if path is None or not path.is_file():
        return None
    return path.read_text(encoding="utf-8", errors="replace")
