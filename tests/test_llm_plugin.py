"""LLM agents through real pytest runs (pytester): the mini suite's fake records, real node runs, the real
openai client against the scripted loopback server; and one aide search on the real tiny suite."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fakes import scored_from_times, write_suite
from llm_stub import ChatServer, answer, blocks_between, current_work, error, prompt_script, set_work
from pytest_speedrun.tasks.manifest import find_suite

pytest_plugins = ["pytester"]


@pytest.fixture
def chat_server():
    with ChatServer() as server:
        yield server


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    return write_suite(pytester.path / "suites")


@pytest.fixture
def run(pytester: pytest.Pytester, suite: Path, cache_dir: Path, chat_server: ChatServer):
    def _run(*args: str, agent: str = "local") -> pytest.RunResult:
        return pytester.runpytest(f"--speedrun-suite={suite}", f"--speedrun-cache-dir={cache_dir}", "-p",
                                  "no:cacheprovider", f"--speedrun-agent={agent}",
                                  f"--speedrun-base-url={chat_server.url}", *args)
    return _run


def records(pytester: pytest.Pytester) -> list[dict]:
    return [json.loads(ln) for ln in (pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()]


def faster(chat_server: ChatServer) -> None:
    """Every answer cuts WORK_S to 55% (never exactly the next record's 0.3: that would be a copy of it)."""
    chat_server.responder = lambda req: answer(set_work(prompt_script(req),
                                                        round(current_work(prompt_script(req)) * 0.55, 3)))


def test_local_agent_runs_a_mini_task_end_to_end(run, pytester: pytest.Pytester, chat_server: ChatServer) -> None:
    faster(chat_server)
    result = run("-k", "mini01", "--junitxml=r.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*= speedrun =*", "mini01[[]h0-s0[]]*passed*",
                                 "*local · stub-model · single · h0: score*",
                                 "LLM usage: 1 call(s), 1000 input + 500 output tokens, $0.0000 over 1 item(s)"])
    (record,) = records(pytester)
    assert (record["agent"], record["model"], record["scaffold"]) == ("local", "stub-model", "single")
    assert scored_from_times([record]) == [] and record["usage"]["calls"] == 1
    assert "WORK_S = 0.33\n" in Path(record["artifact_dir"], "solution.py").read_text()
    (case,) = ET.parse(pytester.path / "r.xml").getroot().iter("testcase")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert (props["calls"], props["input_tokens"], props["output_tokens"], props["cost_usd"]) == \
           ("1", "1000", "500", "0.0")
    assert Path(record["artifact_dir"], "llm.jsonl").exists() and Path(record["artifact_dir"], "agent.log").exists()


def aide_answers(chat_server: ChatServer):
    """Two drafts (WORK_S 0.45, then 0.5), then an improvement of the best to 0.32."""
    def respond(req: dict):
        script, text = prompt_script(req), req["messages"][1]["content"]
        if "## Your step: improve" in text:
            return answer(set_work(script, 0.32))
        drafts = sum("## Your step: a new" in r["messages"][1]["content"] for r in chat_server.chat_requests())
        return answer(set_work(script, 0.5) if drafts == 2 else set_work(script, 0.45))
    return respond


def test_an_aide_search_scores_its_best_node_and_saves_the_tree(run, pytester: pytest.Pytester,
                                                               chat_server: ChatServer) -> None:
    chat_server.responder = aide_answers(chat_server)
    result = run("-k", "mini01", "--speedrun-scaffold=aide", "--speedrun-budget=3", "--speedrun-n0=2",
                 "--speedrun-p-debug=0")
    result.assert_outcomes(passed=1)
    (record,) = records(pytester)
    assert [(n["index"], n["parent"], n["note"]) for n in record["nodes"]] == \
           [(0, None, "draft"), (1, None, "draft"), (2, 0, "improve")]
    assert record["scaffold"] == "aide" and record["usage"]["calls"] == 3 and len(record["usage"]["nodes"]) == 3
    art = Path(record["artifact_dir"])
    tree = json.loads((art / "search.json").read_text())
    assert tree["best"] == 2 and [n["status"] for n in tree["nodes"]] == ["passed"] * 3
    assert record["log_path"] == str(art / "nodes" / "002" / "run.log")  # the node's run is the score
    assert not (art / "run.log").exists() and scored_from_times([record]) == []


def test_resume_continues_an_interrupted_search_from_its_runs_and_answers(run, pytester: pytest.Pytester,
                                                                         chat_server: ChatServer) -> None:
    chat_server.responder = aide_answers(chat_server)
    args = ("-k", "mini01", "--speedrun-scaffold=aide", "--speedrun-budget=3", "--speedrun-n0=2",
            "--speedrun-p-debug=0")
    run(*args).assert_outcomes(passed=1)
    (first,) = records(pytester)
    art = Path(first["artifact_dir"])
    # Interrupt it by hand: the third node's run never finished and its answer never came; no result was written.
    (art / "result.json").unlink()
    (pytester.path / ".speedrun" / "results.jsonl").unlink()
    shutil.rmtree(art / "nodes" / "002")
    lines = (art / "llm.jsonl").read_text().splitlines()
    last_request = max(i for i, ln in enumerate(lines) if json.loads(ln)["type"] == "request")
    (art / "llm.jsonl").write_text("\n".join(lines[:last_request]) + "\n")
    before = len(chat_server.chat_requests())

    run(*args, "--speedrun-resume").assert_outcomes(passed=1)
    (second,) = records(pytester)
    assert len(chat_server.chat_requests()) - before == 1  # only the answer the attempt never got is asked for
    assert second["resumed_from"] == str(art) and second["usage"]["replayed"] == 2
    assert second["usage"]["calls"] == 3  # the replayed answers still count what they cost
    reused = [n["reused_from"] for n in second["nodes"]]
    assert reused[:2] == [str(art / "nodes" / "000"), str(art / "nodes" / "001")] and reused[2] is None
    assert [(n["status"], n["train_time_ms"]) for n in second["nodes"][:2]] == \
           [(n["status"], n["train_time_ms"]) for n in first["nodes"][:2]]  # the same runs, judged again
    assert second["status"] == "passed" and scored_from_times([second]) == []


def test_5xx_until_the_retries_run_out_is_status_agent_error(run, pytester: pytest.Pytester,
                                                              chat_server: ChatServer, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    pytester.makepyprojecttoml('[tool.pytest-speedrun.agents.openai]\nllm_retry_base_s = 0.01\n')
    chat_server.push(error(503, "overloaded"), error(503, "overloaded"))
    result = run("-k", "mini01", "--speedrun-llm-retries=1", agent="openai")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*status agent-error: openai: request to http://127.0.0.1:*/v1 failed after "
                                 "2 attempt(s): HTTP 503: overloaded*"])
    (record,) = records(pytester)
    assert len(chat_server.requests) == 2 and record["status"] == "agent-error"


def test_a_failed_agent_still_records_what_it_spent(run, pytester: pytest.Pytester, chat_server: ChatServer) -> None:
    chat_server.responder = lambda req: answer("no idea")
    result = run("-k", "mini01", "--speedrun-reflections=1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*status agent-error: no usable edit after 1 reflection(s)*",
                                 "LLM usage: 2 call(s), 2000 input + 1000 output tokens*"])
    (record,) = records(pytester)
    assert record["status"] == "agent-error" and record["usage"]["calls"] == 2


def test_a_missing_api_key_is_agent_error_before_any_work(run, pytester: pytest.Pytester, chat_server: ChatServer,
                                                          monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    result = run("-k", "mini01", agent="claude")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*mini01 [[]claude, hints 0, seed 0[]]: status agent-error: ANTHROPIC_API_KEY is "
                                 "not set: the claude agent needs an API key in ANTHROPIC_API_KEY"])
    (record,) = records(pytester)
    assert sorted(p.name for p in Path(record["artifact_dir"]).iterdir()) == ["result.json"]
    assert chat_server.requests == []


def test_the_cost_cap_ends_the_search_and_the_best_node_is_scored(run, pytester: pytest.Pytester,
                                                                  chat_server: ChatServer) -> None:
    pytester.makepyprojecttoml('[tool.pytest-speedrun.agents.local]\ninput_usd_per_mtok = 1.0\n'
                               'output_usd_per_mtok = 1.0\n')
    works = iter([0.5, 0.32, 0.4, 0.2, 0.2])
    chat_server.responder = lambda req: answer(set_work(prompt_script(req), next(works)))
    result = run("-k", "mini01", "--speedrun-scaffold=flat", "--speedrun-budget=10", "--speedrun-max-cost=0.004")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["LLM usage: 3 call(s), 3000 input + 1500 output tokens, $0.0045 over 1 item(s)"])
    (record,) = records(pytester)
    assert len(record["nodes"]) == 3 and "--speedrun-max-cost=0.004" in record["usage"]["stopped"]
    assert "WORK_S = 0.32\n" in Path(record["artifact_dir"], "solution.py").read_text()


def test_a_cache_replay_makes_zero_requests_and_reproduces_the_solution(run, pytester: pytest.Pytester,
                                                                        chat_server: ChatServer) -> None:
    # flat: each step is a draft whatever the runs said, so the replay asks the same questions even when a loaded
    # machine judges a node differently the second time (tree follows its runs; test_llm_scaffolds covers it).
    faster(chat_server)
    args = ("-k", "mini01", "--speedrun-model=m", "--speedrun-scaffold=flat", "--speedrun-budget=3")
    run(*args, "--speedrun-llm-cache=write").assert_outcomes(passed=1)
    live = len(chat_server.requests)
    chat_server.responder = None
    run(*args, "--speedrun-llm-cache=read", "--speedrun-llm-retries=0").assert_outcomes(passed=1)
    first, second = records(pytester)
    assert live == 3 and len(chat_server.requests) == live and second["usage"]["cache_hits"] == 3
    for name in ("solution.py", "nodes/000/train_gpt2.py", "nodes/001/train_gpt2.py", "nodes/002/train_gpt2.py"):
        assert Path(first["artifact_dir"], name).read_text() == Path(second["artifact_dir"], name).read_text()


def test_agents_are_configured_from_pyproject_tables_and_ini_keys(run, pytester: pytest.Pytester,
                                                                  chat_server: ChatServer) -> None:
    faster(chat_server)
    pytester.makepyprojecttoml(f'''
        [tool.pytest.ini_options]
        speedrun_agent_local_model = "ini-model"
        speedrun_reflections = "1"

        [tool.pytest-speedrun.agents.mine]
        preset = "local"
        base_url = "{chat_server.url}"
        model = "table-model"
        temperature = 0.25
    ''')
    run("-k", "mini01").assert_outcomes(passed=1)
    run("-k", "mini01", agent="mine").assert_outcomes(passed=1)
    local, mine = chat_server.chat_requests()
    assert local["model"] == "ini-model" and "temperature" not in local
    assert (mine["model"], mine["temperature"]) == ("table-model", 0.25)
    assert [r["agent"] for r in records(pytester)] == ["local", "mine"]


def test_a_bad_llm_option_is_a_usage_error(run) -> None:
    result = run("--speedrun-scaffold=beam")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--speedrun-scaffold=beam: 'beam' is not one of single, flat, tree, forest, aide, "
                                 "multi-aide*"])


@pytest.mark.slow
def test_aide_on_tiny04_recovers_the_next_record(pytester: pytest.Pytester, cache_dir: Path,
                                                 chat_server: ChatServer) -> None:
    """The scripted model answers the draft with the SEARCH/REPLACE blocks that turn record 4 into record 5, and
    the improvement step with a harmless edit; the search's best node scores FSR ≈ 1. (The module docstring stays
    record 4's: a byte copy of the target script is flagged as a leak, rightly.)"""
    records_dir = find_suite("tiny") / "records"
    record_4, record_5 = ((records_dir / f"record_{k}.py").read_text() for k in (4, 5))
    doc_end = record_4.index('"""', 3) + 4
    to_5 = blocks_between(record_4, record_4[:doc_end] + record_5[record_5.index('"""', 3) + 4:])

    def respond(req: dict):
        script = prompt_script(req)
        if script == record_4:
            return answer("Quintic Newton-Schulz, Nesterov, half the batch.\n\n" + to_5)
        first = script.splitlines()[0]
        return answer(f"<<<<<<< SEARCH\n{first}\n=======\n{first} (checked)\n>>>>>>> REPLACE")

    chat_server.responder = respond
    result = pytester.runpytest_subprocess(
        "--speedrun-suite=tiny", "-k", "tiny04", f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider",
        "--speedrun-agent=local", f"--speedrun-base-url={chat_server.url}", "--speedrun-scaffold=aide",
        "--speedrun-budget=2", "--speedrun-n0=1", "--speedrun-p-debug=0")
    result.assert_outcomes(passed=1)
    (record,) = records(pytester)
    assert [(n["parent"], n["note"], n["status"]) for n in record["nodes"]] == \
           [(None, "draft", "passed"), (0, "improve", "passed")]
    # a quiet machine's band, or the harness said the machine was too noisy and the interval still covers 1
    assert scored_from_times([record]) == [], record
    solution = Path(record["artifact_dir"], "solution.py").read_text()
    assert "a, b, c = 3.4445, -4.7750, 2.0315" in solution and "batch_size: int = 16" in solution
