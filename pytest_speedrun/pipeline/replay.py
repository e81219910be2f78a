"""Resume an interrupted item from what it left on disk: the node runs it finished and the LLM answers it got.

`--speedrun-resume` skips items that completed. An item that was interrupted (pytest killed, the machine lost)
has an artifacts directory with `item.json` (its config key) but no `result.json`. Resuming it runs the agent
again, with two memories of the interrupted attempt:

- `RunMemo`: a candidate script whose bytes equal a node script the attempt already ran reuses that run (its
  log and how it ended, `run.outcome.json`) instead of training again. The log is parsed and every check is
  applied again, exactly as for a fresh run. Each earlier run is reused at most once, so a search that ran the
  same script twice still runs it twice.
- `llm_replies` (agents/llm/transcript.py, next to the writer of that format): the answers in the attempt's
  `llm.jsonl`, by cache key, so the LLM agent replays them (they count their tokens and cost as recorded, like
  cache hits) instead of paying for them again.

A deterministic search (seeded, same answers, same measured figures) then retraces the interrupted attempt at
no cost up to where it stopped, and continues live from there.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, fields
from pathlib import Path

from pytest_speedrun.agents.llm.transcript import llm_replies  # noqa: F401  (re-exported for replay's callers)
from pytest_speedrun.execution.runner import RunOutcome
from pytest_speedrun.judging.status import AGENT_ERROR

ITEM_MARKER = "item.json"
OUTCOME = "run.outcome.json"


def mark_started(artifacts_dir: Path, config_key: str, session_id: str) -> None:
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    (artifacts_dir / ITEM_MARKER).write_text(json.dumps({"config_key": config_key, "session": session_id,
                                                          "started": time.time()}) + "\n")


def find_interrupted(results_dir: Path, config_key: str) -> Path | None:
    """The latest artifacts directory of an attempt at `config_key` that never wrote its result, or whose agent
    failed (resume retries those; e.g. an LLM search cut short by an API outage continues where it stopped)."""
    found = []
    for marker in results_dir.glob(f"*/*/{ITEM_MARKER}"):
        try:
            data = json.loads(marker.read_text())
            result = marker.parent / "result.json"
            unfinished = not result.exists() or json.loads(result.read_text()).get("status") == AGENT_ERROR
        except (OSError, ValueError):
            continue
        if data.get("config_key") == config_key and unfinished:
            found.append((float(data.get("started", 0)), str(marker.parent)))
    return Path(max(found)[1]) if found else None


def save_outcome(log_path: Path, outcome: RunOutcome) -> None:
    """How the run that wrote `log_path` ended, next to it (what a later resume needs to reuse the run)."""
    data = {k: v for k, v in asdict(outcome).items() if k not in ("log_path", "reattached")}
    (log_path.parent / OUTCOME).write_text(json.dumps(data, default=str) + "\n")


def load_outcome(directory: Path, log_path: Path) -> RunOutcome:
    data = json.loads((directory / OUTCOME).read_text())
    known = {f.name for f in fields(RunOutcome)} - {"log_path"}
    data = {k: v for k, v in data.items() if k in known}
    data["command"] = tuple(data.get("command", ()))
    return RunOutcome(log_path=log_path, **data)


class RunMemo:
    """The node runs an interrupted attempt finished, by script bytes."""

    def __init__(self, previous: Path | None) -> None:
        self.previous = previous
        self.runs: dict[str, list[Path]] = defaultdict(list)
        if previous is None:
            return
        candidates = [(node / "train_gpt2.py", node) for node in sorted((previous / "nodes").glob("*"))]
        candidates.append((previous / "solution.py", previous))  # the final run, for agents without a search
        for script, run_dir in candidates:
            if (run_dir / OUTCOME).exists() and script.exists() and (run_dir / "run.log").exists():
                self.runs[hashlib.sha256(script.read_bytes()).hexdigest()].append(run_dir)

    def take(self, script_text: str) -> Path | None:
        """An unused earlier run of exactly this script, or None."""
        queue = self.runs.get(hashlib.sha256(script_text.encode("utf-8")).hexdigest())
        return queue.pop(0) if queue else None

    @staticmethod
    def restore(source: Path, log_path: Path) -> RunOutcome:
        """Copy the earlier run's log (and Slurm record) to `log_path`; return how that run ended."""
        shutil.copyfile(source / "run.log", log_path)
        for name in ("run.timeline", "run.cpu.json"):  # the harness's clock and CPU accounting of that run
            if (source / name).exists():
                shutil.copyfile(source / name, log_path.parent / (log_path.stem + Path(name).suffix))
        if (source / "run.slurm.json").exists():
            shutil.copyfile(source / "run.slurm.json", log_path.with_suffix(".slurm.json"))
        return load_outcome(source, log_path)
