"""Resuming an interrupted item: finding the attempt, reusing its runs, replaying its LLM answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_speedrun.execution.runner import RunOutcome
from pytest_speedrun.pipeline.replay import RunMemo, find_interrupted, llm_replies, mark_started, save_outcome

pytest_plugins = ["pytester"]


def _attempt(root: Path, session: str, key: str, status: str | None = None) -> Path:
    art = root / session / "mini01_h0-s0"
    mark_started(art, key, session)
    if status is not None:
        (art / "result.json").write_text(json.dumps({"status": status}))
    return art


def test_the_latest_unfinished_attempt_of_the_same_config_is_found(tmp_path: Path) -> None:
    _attempt(tmp_path, "s1", "key")
    latest = _attempt(tmp_path, "s2", "key")
    _attempt(tmp_path, "s3", "key", status="passed")  # finished: nothing to continue
    _attempt(tmp_path, "s4", "other-key")
    assert find_interrupted(tmp_path, "key") == latest
    assert find_interrupted(tmp_path, "missing") is None


def test_an_attempt_whose_agent_failed_is_continued_too(tmp_path: Path) -> None:
    failed = _attempt(tmp_path, "s1", "key", status="agent-error")
    assert find_interrupted(tmp_path, "key") == failed


def _run(directory: Path, script: str, log: str, exit_code: int = 0) -> None:
    directory.mkdir(parents=True)
    (directory / "train_gpt2.py").write_text(script)
    (directory / "run.log").write_text(log)
    save_outcome(directory / "run.log", RunOutcome(exit_code=exit_code, wall_s=3.5, log_path=directory / "run.log",
                                                   timed_out=False, command=("python", "train_gpt2.py")))


def test_each_earlier_run_of_the_same_bytes_is_reused_once(tmp_path: Path) -> None:
    previous = tmp_path / "old"
    _run(previous / "nodes" / "000", "a = 1\n", "first run\n")
    _run(previous / "nodes" / "001", "a = 1\n", "second run\n")
    _run(previous / "nodes" / "002", "b = 2\n", "crash\n", exit_code=1)
    (previous / "nodes" / "003").mkdir()  # started, never finished: no outcome, not reusable
    (previous / "nodes" / "003" / "train_gpt2.py").write_text("c = 3\n")
    memo = RunMemo(previous)
    assert memo.take("c = 3\n") is None and memo.take("a = 2\n") is None
    first, second = memo.take("a = 1\n"), memo.take("a = 1\n")
    assert (first, second) == (previous / "nodes" / "000", previous / "nodes" / "001")
    assert memo.take("a = 1\n") is None
    log = tmp_path / "new" / "run.log"
    log.parent.mkdir()
    outcome = RunMemo.restore(memo.take("b = 2\n"), log)
    assert log.read_text() == "crash\n" and (outcome.exit_code, outcome.wall_s, outcome.log_path) == (1, 3.5, log)
    assert outcome.command == ("python", "train_gpt2.py")


def test_no_attempt_means_nothing_to_reuse() -> None:
    assert RunMemo(None).take("a = 1\n") is None and llm_replies(None) == {}


def test_answers_pair_with_their_requests_and_a_cut_line_is_ignored(tmp_path: Path) -> None:
    events = [
        {"type": "request", "call": 1, "cache_key": "k1"},
        {"type": "response", "call": 1, "content": "one", "input_tokens": 10, "output_tokens": 5,
         "finish_reason": "stop", "latency_s": 2.0},
        {"type": "request", "call": 2, "cache_key": "k2"},  # interrupted while waiting for its answer
    ]
    text = "\n".join(json.dumps(e) for e in events) + '\n{"type": "response", "call": 2, "cont'
    (tmp_path / "llm.jsonl").write_text(text)
    assert llm_replies(tmp_path) == {"k1": {"content": "one", "input_tokens": 10, "output_tokens": 5,
                                            "finish_reason": "stop", "latency_s": 2.0}}


def test_an_interrupted_final_run_is_reused_by_agents_without_a_search(pytester: pytest.Pytester, suite: Path,
                                                                       cache_dir: Path) -> None:
    args = (f"--speedrun-suite={suite}", f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider",
            "--speedrun-agent=oracle", "-k", "mini01")
    pytester.runpytest(*args).assert_outcomes(passed=1)
    store = pytester.path / ".speedrun" / "results.jsonl"
    art = Path(json.loads(store.read_text())["artifact_dir"])
    (art / "result.json").unlink()  # killed after its run, before its result was written
    store.unlink()
    pytester.runpytest(*args, "--speedrun-resume").assert_outcomes(passed=1)
    record = json.loads(store.read_text())
    assert record["resumed_from"] == str(art) and record["artifact_dir"] != str(art)
    assert Path(record["log_path"]).read_text() == (art / "run.log").read_text()  # the same run, not a new one
