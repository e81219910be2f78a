"""The project's vocabularies, each word spelled once: item statuses, search-node kinds, item modes, launchers.

Plain strings typed with `Literal`, not Enums: they go into reason texts, JUnit properties and results.jsonl
exactly as written (an Enum member would print as `Status.PASSED` in an f-string on Python 3.11).

Statuses (the same words in the summary, JUnit and results.jsonl):

    passed       the script reached the target val_loss (its speed is then scored)
    invalid      it ran but missed the target (or failed the repeats' t-test)
    crashed      non-zero exit
    timeout      killed at the run's timeout
    no-result    no final validation line could be parsed
    tampered     direct evidence of faking (the log, the data, the clock, the answer read)
    suspicious   evidence that needs a human look (near-copy, untimed work); scored only when allowed
    skipped      not run: resume found it done, or the session stopped first
    agent-error  the agent failed to produce a script

A search node (the scaffolds' tree) that could not be edited into a script at all is `edit-failed`; that word
is a node status only, never an item's.
"""

from __future__ import annotations

from typing import Final, Literal

Status = Literal["passed", "invalid", "crashed", "timeout", "no-result", "tampered", "suspicious", "skipped",
                 "agent-error"]
PASSED: Final = "passed"
INVALID: Final = "invalid"
CRASHED: Final = "crashed"
TIMEOUT: Final = "timeout"
NO_RESULT: Final = "no-result"
TAMPERED: Final = "tampered"
SUSPICIOUS: Final = "suspicious"
SKIPPED: Final = "skipped"
AGENT_ERROR: Final = "agent-error"
STATUSES: Final = (PASSED, INVALID, CRASHED, TIMEOUT, NO_RESULT, TAMPERED, SUSPICIOUS, SKIPPED, AGENT_ERROR)
RETRYABLE: Final = frozenset({AGENT_ERROR, SKIPPED})  # --speedrun-resume runs these again

EDIT_FAILED: Final = "edit-failed"  # a search node whose edit could not be applied (no script to run)

NodeKind = Literal["draft", "improve", "debug"]
DRAFT: Final = "draft"
IMPROVE: Final = "improve"
DEBUG: Final = "debug"
NODE_KINDS: Final = (DRAFT, IMPROVE, DEBUG)

Mode = Literal["benchmark", "smoke"]
BENCHMARK: Final = "benchmark"
SMOKE: Final = "smoke"

# Where an item's interpreter came from (execution/runtime.py): --speedrun-python, the user's mapping of the
# runtime (--speedrun-runtime / ini speedrun_runtimes), a runtime built into the cache, or the interpreter pytest
# runs in (a task that names no runtime, or a runtime not built whose probes pass here).
RuntimeKind = Literal["python-option", "mapped", "built", "current"]
PYTHON_OPTION: Final = "python-option"
MAPPED: Final = "mapped"
BUILT: Final = "built"
CURRENT: Final = "current"
RUNTIME_KINDS: Final = (PYTHON_OPTION, MAPPED, BUILT, CURRENT)

Launcher = Literal["local", "slurm"]
LOCAL: Final = "local"
SLURM: Final = "slurm"
LAUNCHERS: Final = (LOCAL, SLURM)

# What a task is scored by (tasks/manifest.py `metric`): the reported train time (the record-history and time
# tracks), or the number of training steps (the optimization track: data, batch and architecture fixed).
Metric = Literal["time", "steps"]
TIME: Final = "time"
STEPS: Final = "steps"
METRICS: Final = (TIME, STEPS)
