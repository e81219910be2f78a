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

from pytest_speedrun.judging.contract import contract_reasons
from pytest_speedrun.judging.nearcopy import near_copy_reasons
from pytest_speedrun.judging.valpath import val_path_reasons
from pytest_speedrun.tasks.manifest import Task


def static_reasons(start_text: str, solution_text: str, target_text: str | None,
                   script_name: str = "train_gpt2.py") -> tuple[list[str], list[str]]:
    """(tampered, suspicious) reasons for `solution_text`, judged against the start script it was made from and
    the target record's script. Pass `target_text=None` where the target is no evidence: for trusted agents
    (the oracle hands over the target by design) or when the target script is not available locally."""
    tampered = contract_reasons(start_text, solution_text, script_name)
    suspicious = near_copy_reasons(solution_text, target_text, script_name)
    suspicious += val_path_reasons(start_text, solution_text, script_name)
    return tampered, suspicious


def target_text(task: Task) -> str | None:
    """The target record's script as text, when it is on this machine (in-repo suites, or a fetched record
    once fetch.py has resolved the task to its cached copy)."""
    path = task.target.script.path
    if path is None or not path.is_file():
        return None
    return path.read_text(encoding="utf-8", errors="replace")
