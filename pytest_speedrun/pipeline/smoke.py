"""Smoke mode (`--speedrun-smoke`), all of it but the wiring in session.py: run each task's start script for a few
steps on small generated shards in the real format, to check torch, compile, GPUs and the env contract in minutes
before spending node-hours.

The iteration count is rewritten on a copy of the script in the item's own directory; a real run never goes
through this module, so the rewrite cannot leak into a scored run.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from pytest_speedrun.data.dataset import Dataset, ensure_generated_dataset, ensure_tiny_dataset
from pytest_speedrun.errors import SpeedrunError
from pytest_speedrun.judging.status import INVALID, PASSED, SMOKE
from pytest_speedrun.pipeline.item import SCRIPT_NAME, RunSettings, execute_script, runtime_fields
from pytest_speedrun.pipeline.workspace import copy_companions
from pytest_speedrun.results import record
from pytest_speedrun.results.record import ItemResult
from pytest_speedrun.tasks.manifest import Task

SMOKE_STEPS = 20
# 512 sequences of 1024 tokens: a multiple of every record's per-step val batch on 1 or 8 GPUs.
SMOKE_VAL_TOKENS = 512 * 1024
_ITERATIONS = [
    re.compile(r"^(\s*num_iterations\s*:\s*int\s*=\s*)(\d+)", re.MULTILINE),  # dataclass field (records 4+)
    re.compile(r"^(\s*num_iterations\s*=\s*)(\d+)", re.MULTILINE),  # plain assignment
    re.compile(r"(add_argument\(\s*['\"]--num_iterations['\"][^)]*default\s*=\s*)(\d+)"),  # argparse default
]


def shorten(source: str, steps: int = SMOKE_STEPS) -> str:
    """`source` with its iteration count set to `steps`; SpeedrunError if the script does not declare one."""
    for pattern in _ITERATIONS:
        if pattern.search(source):
            return pattern.sub(lambda m: f"{m.group(1)}{steps}", source, count=1)
    raise SpeedrunError("smoke mode cannot find the script's iteration count (num_iterations) to shorten it")


def smoke_dataset(cache_dir: Path, dataset: str) -> Dataset:
    """Small shards in the FineWeb format: the tiny corpus for tiny tasks; for FineWeb tasks, generated shards
    big enough for a few steps of the real records (GPT-2 token ids below 512 are valid ids)."""
    if dataset == "tiny":
        return ensure_tiny_dataset(cache_dir)
    return ensure_generated_dataset(cache_dir / "smoke-data", train_shards=1, tokens_per_train_shard=4 << 20,
                                    val_tokens=SMOKE_VAL_TOKENS + 1024, val_tokens_contract=SMOKE_VAL_TOKENS)


def smoke_task(task: Task, dataset: Dataset) -> Task:
    """`task` with the env contract's NANOGPT_VAL_TOKENS capped at what the smoke shards hold: the NanoGPT
    manifests' 10,485,760 would outrun the small val shard (records 12+ stop with StopIteration at its end)."""
    wanted = int(task.launch.env.get("NANOGPT_VAL_TOKENS", dataset.val_tokens))
    env = {**task.launch.env, "NANOGPT_VAL_TOKENS": str(min(wanted, dataset.val_tokens))}
    return replace(task, launch=replace(task.launch, env=env))


def run_smoke(task: Task, settings: RunSettings, art: Path, seed: int = 0) -> ItemResult:
    """Smoke mode: the start script, shortened on a copy in the item's directory, on small generated shards.
    It passes when the run exits 0 and prints a validation line the harness can parse; the loss is not judged."""
    assert task.start.script.path is not None
    work = art / "smoke"
    work.mkdir(parents=True)
    script = work / SCRIPT_NAME
    script.write_text(shorten(task.start.script.path.read_text(encoding="utf-8")), encoding="utf-8")
    copy_companions(task.id, task.start.script, work)
    started = record.now()
    ex = execute_script(script, task, settings, seed, art / "run.log")
    status, reasons = ex.verdict.status, ex.verdict.reasons
    if status == INVALID:  # the loss after a few steps is meaningless: only the run is checked
        status, reasons = PASSED, ()
    m = ex.metrics
    result = ItemResult(
        task=task.id, suite=task.suite, agent=SMOKE, hints="0", seed=seed, status=status,
        reasons=reasons + (f"smoke: {SMOKE_STEPS} steps on generated shards; val_loss not judged",),
        target_val_loss=task.target_val_loss, t_start_ms=task.start.train_time_ms,
        t_target_ms=task.target.train_time_ms, reference_source="manifest", artifact_dir=str(art),
        start_source=f"record {task.start.record}", log_path=str(ex.outcome.log_path),
        val_loss=m.val_loss if m else None, train_time_ms=m.train_time_ms if m else None,
        step=m.step if m else None, steps=m.steps if m else None, wall_s=round(ex.outcome.wall_s, 3),
        mode=SMOKE, started=started, finished=record.now(), **runtime_fields(settings.runtime),
    )
    return record.write(art, result)
