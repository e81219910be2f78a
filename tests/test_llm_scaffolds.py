"""Node accounting of every scaffold (counts, parents, step kinds, debug selection), through the real openai
client against the scripted server, with node runs faked by `FakeRuns` (train time = WORK_S; a `raise` line
crashes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_stub import ChatServer, FakeRuns, answer, current_work, make_context, prompt_script
from pytest_speedrun.agents import Solution
from pytest_speedrun.agents.llm import ConfigSource, make_llm_agent
from pytest_speedrun.errors import AgentError
from pytest_speedrun.judging.status import SUSPICIOUS

BUG = "raise SystemExit(3)"


@pytest.fixture
def chat_server():
    with ChatServer() as server:
        yield server


def step_of(request: dict) -> str:
    text = request["messages"][1]["content"]
    return "debug" if "## Your step: fix" in text else "improve" if "## Your step: improve" in text else "draft"


def edit(script: str, work: float, buggy: bool) -> str:
    """A SEARCH/REPLACE answer setting WORK_S and adding or removing the crashing line."""
    lines = script.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("WORK_S = "))
    has_bug = i + 1 < len(lines) and lines[i + 1] == BUG
    search = lines[i:i + 2] if has_bug else lines[i:i + 1]
    replace = [f"WORK_S = {work}"] + ([BUG] if buggy else [])
    return "Idea.\n<<<<<<< SEARCH\n" + "\n".join(search) + "\n=======\n" + "\n".join(replace) + "\n>>>>>>> REPLACE\n"


def policy(chat_server: ChatServer, decide: Callable[[str, str, int], tuple[float, bool]]) -> None:
    """Answer every request by `decide(step kind, current script, call number) -> (WORK_S, buggy)`."""
    calls = iter(range(10_000))

    def respond(request: dict):
        script = prompt_script(request)
        return answer(edit(script, *decide(step_of(request), script, next(calls))))

    chat_server.responder = respond


def search(chat_server: ChatServer, tmp_path: Path, name: str = "art", seed: int = 0,
           **cli) -> tuple[Solution, FakeRuns, dict]:
    runs = FakeRuns()
    ctx = make_context(tmp_path, execute=runs, name=name)
    ctx = type(ctx)(**{**ctx.__dict__, "seed": seed})
    agent = make_llm_agent("local", source=ConfigSource(cli={"base_url": chat_server.url, "model": "m", **cli}))
    solution = agent.solve(ctx)
    return solution, runs, json.loads((ctx.artifacts_dir / "search.json").read_text())


def parents(runs: FakeRuns) -> list[int | None]:
    return [r.parent for r in runs.results]


def notes(runs: FakeRuns) -> list[str]:
    return [r.note for r in runs.results]


def halve(kind: str, script: str, call: int) -> tuple[float, bool]:
    return current_work(script) / 2, False


def test_flat_runs_m_drafts_of_the_start_script_and_keeps_the_fastest(chat_server: ChatServer,
                                                                       tmp_path: Path) -> None:
    works = [0.5, 0.2, 0.4, 0.3]
    policy(chat_server, lambda kind, script, call: (works[call], False))
    solution, runs, tree = search(chat_server, tmp_path, scaffold="flat", budget=4)
    assert parents(runs) == [None] * 4 and notes(runs) == ["draft"] * 4
    assert solution.node == 1 and "WORK_S = 0.2\n" in solution.script
    assert tree["best"] == 1 and [n["index"] for n in tree["nodes"]] == [0, 1, 2, 3]


def test_tree_grows_n_children_from_the_best_node_per_step(chat_server: ChatServer, tmp_path: Path) -> None:
    policy(chat_server, halve)
    solution, runs, tree = search(chat_server, tmp_path, scaffold="tree", budget=7, branch=3)
    assert parents(runs) == [None, 0, 0, 0, 1, 1, 1]
    assert notes(runs) == ["draft"] + ["improve"] * 6
    assert solution.node == 4 and tree["nodes"][0]["children"] == [1, 2, 3]


def test_forest_starts_from_n0_drafts(chat_server: ChatServer, tmp_path: Path) -> None:
    drafts = iter([0.5, 0.4])
    policy(chat_server, lambda kind, script, call: (next(drafts), False) if kind == "draft" else
           (current_work(script) / 2, False))
    solution, runs, _ = search(chat_server, tmp_path, scaffold="forest", budget=6, n0=2, branch=2)
    assert parents(runs) == [None, None, 1, 1, 2, 2]
    assert notes(runs) == ["draft", "draft", "improve", "improve", "improve", "improve"]


def test_aide_debugs_only_buggy_leaves_up_to_d_max(chat_server: ChatServer, tmp_path: Path) -> None:
    policy(chat_server, lambda kind, script, call: (0.5 - 0.01 * call, True))  # nothing ever gets fixed
    solution, runs, tree = search(chat_server, tmp_path, scaffold="aide", budget=5, n0=1, p_debug=1.0,
                                  max_debug_depth=2)
    # draft, debug, debug (depth 2 = D_max: no further debug), then a new draft (no valid node to improve)
    assert parents(runs) == [None, 0, 1, None, 3]
    assert notes(runs) == ["draft", "debug", "debug", "draft", "debug"]
    assert [n["debug_depth"] for n in tree["nodes"]] == [0, 1, 2, 0, 1]
    assert solution.node is None and solution.script == make_context(tmp_path, name="x").start_script


def test_aide_improves_the_best_node_with_one_child_when_no_debug_is_drawn(chat_server: ChatServer,
                                                                            tmp_path: Path) -> None:
    drafts = iter([0.4, 0.3])
    policy(chat_server, lambda kind, script, call: (next(drafts), False) if kind == "draft" else
           (current_work(script) - 0.1, False))
    _, runs, _ = search(chat_server, tmp_path, scaffold="aide", budget=4, n0=2, p_debug=0.0)
    assert parents(runs) == [None, None, 1, 2] and notes(runs) == ["draft", "draft", "improve", "improve"]


def test_multi_aide_gives_each_step_n_children(chat_server: ChatServer, tmp_path: Path) -> None:
    policy(chat_server, lambda kind, script, call: (0.5 - 0.01 * call, True))
    _, runs, _ = search(chat_server, tmp_path, scaffold="multi-aide", budget=7, n0=1, branch=2, p_debug=1.0,
                        max_debug_depth=1)
    p = parents(runs)
    assert p[:5] == [None, 0, 0, None, None] and p[5] == p[6] and p[5] in (3, 4)
    assert notes(runs) == ["draft", "debug", "debug", "draft", "draft", "debug", "debug"]


def mixed(kind: str, script: str, call: int) -> tuple[float, bool]:
    """Drafts crash every other time, debugs fix, improvements sometimes crash."""
    if kind == "draft":
        return 0.5 - 0.01 * call, call % 2 == 0
    if kind == "debug":
        return current_work(script), False
    return current_work(script) * 0.9, call % 3 == 0


def test_an_aide_search_is_seeded_and_respects_the_selection_rules(chat_server: ChatServer,
                                                                    tmp_path: Path) -> None:
    policy(chat_server, mixed)
    _, runs, _ = search(chat_server, tmp_path, name="a", scaffold="aide", budget=12, n0=3, max_debug_depth=2)
    children: dict[int, int] = {}
    for r in runs.results[3:]:
        earlier = runs.results[:r.index]
        parent = runs.results[r.parent] if r.parent is not None else None
        if r.note == "debug":
            depth, node = 0, parent
            while node.note == "debug":
                depth, node = depth + 1, runs.results[node.parent]
            assert not parent.valid and depth < 2 and children.get(parent.index, 0) == 0
        else:
            best = min((n for n in earlier if n.valid and n.fsr > 0), key=lambda n: n.train_time_ms, default=None)
            assert parent is best
        if r.parent is not None:
            children[r.parent] = children.get(r.parent, 0) + 1
    assert {"debug", "improve"} <= set(notes(runs))
    policy(chat_server, mixed)
    _, again, _ = search(chat_server, tmp_path, name="b", scaffold="aide", budget=12, n0=3, max_debug_depth=2)
    assert (parents(again), notes(again)) == (parents(runs), notes(runs))


def test_a_search_where_nothing_beats_the_start_script_returns_it(chat_server: ChatServer, tmp_path: Path) -> None:
    policy(chat_server, lambda kind, script, call: (1.2, False))  # 1200 ms > t_i = 1000 ms
    solution, runs, tree = search(chat_server, tmp_path, scaffold="flat", budget=2)
    assert all(r.valid for r in runs.results) and solution.node is None and tree["best"] is None
    assert "WORK_S = 0.6\n" in solution.script


def test_the_next_prompt_carries_the_outcome_and_the_log_excerpt(chat_server: ChatServer, tmp_path: Path) -> None:
    policy(chat_server, lambda kind, script, call: (0.5, kind == "draft"))
    search(chat_server, tmp_path, scaffold="aide", budget=2, n0=1, p_debug=1.0)
    debug_prompt = chat_server.chat_requests()[1]["messages"][1]["content"]
    assert "## Your step: fix attempt 0" in debug_prompt and "log-marker-0" in debug_prompt
    assert "- attempt 0 (draft from the start script): crashed: exit code 3. Idea: Idea." in debug_prompt
    assert f"WORK_S = 0.5\n{BUG}" in prompt_script(chat_server.chat_requests()[1])


def test_an_edit_that_never_applies_spends_a_step_without_a_run(chat_server: ChatServer, tmp_path: Path) -> None:
    calls = iter(range(100))

    def respond(request: dict):
        return answer("no edit here") if next(calls) == 0 else answer(edit(prompt_script(request), 0.4, False))

    chat_server.responder = respond
    solution, runs, tree = search(chat_server, tmp_path, scaffold="flat", budget=3, reflections=0)
    assert len(runs.results) == 2 and len(tree["nodes"]) == 3
    assert tree["nodes"][0]["status"] == "edit-failed" and tree["nodes"][0]["index"] is None
    assert "neither SEARCH/REPLACE blocks" in tree["nodes"][0]["reasons"][0]
    assert "(no run) draft from the start script: the answer could not be applied" in \
        chat_server.chat_requests()[1]["messages"][1]["content"]


def test_single_runs_no_node_and_a_search_needs_the_node_runner(chat_server: ChatServer, tmp_path: Path) -> None:
    policy(chat_server, halve)
    solution, runs, tree = search(chat_server, tmp_path)
    assert runs.results == [] and solution.node is None and "WORK_S = 0.3\n" in solution.script
    agent = make_llm_agent("local", source=ConfigSource(cli={"base_url": chat_server.url, "model": "m",
                                                             "scaffold": "aide"}))
    with pytest.raises(AgentError, match="needs the harness's node runner"):
        agent.solve(make_context(tmp_path, name="no-runner"))


class NoisyRuns(FakeRuns):
    """FakeRuns on a noisy machine: every time is scaled by the next factor of `factors`, and a run listed in
    `flagged` (by index) is judged `suspicious` with a reason, as a real run on a loaded machine can be."""

    def __init__(self, factors: list[float], flagged: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.factors, self.flagged = iter(factors), flagged

    def __call__(self, script_text: str, parent: int | None = None, note: str = ""):
        from dataclasses import replace

        r = super().__call__(script_text, parent, note)
        r = replace(r, train_time_ms=r.train_time_ms * next(self.factors))
        if r.index in self.flagged:
            r = replace(r, status=SUSPICIOUS, reasons=("the run waited 31% of its time for its cores",))
        self.results[-1] = r
        return r


# (scaffold, the live session's runs, the replay's runs). flat: every step is a draft, whatever the runs said,
# so even a verdict that changes is replayed. tree: the step after a run builds on the fastest valid node, so
# a replay follows the live search while the same nodes stay valid; here the two equal drafts swap places.
REPLAYS = {"flat": (NoisyRuns([1.0, 1.3, 1.0]), NoisyRuns([1.4, 1.0, 1.0], flagged=(0,))),
           "tree": (NoisyRuns([1.0, 1.0, 1.3, 1.0]), NoisyRuns([1.0, 1.4, 1.0, 1.0]))}


@pytest.mark.parametrize("scaffold", sorted(REPLAYS))
def test_a_replay_finds_every_answer_though_the_runs_came_out_differently(chat_server: ChatServer, tmp_path: Path,
                                                                          scaffold: str) -> None:
    """The cache key holds what the answers decide (scripts, notes, ideas), never what the runs measured or
    how they were judged: in the replay the times, the verdicts' words and which of two equal scripts was the
    fastest differ, and every answer is still found (a CI run on a loaded machine missed one)."""
    policy(chat_server, halve)
    cache = tmp_path / "cache"
    live_runs, replay_runs = REPLAYS[scaffold]
    budget = 3 if scaffold == "flat" else 4

    def session(name: str, runs: FakeRuns, mode: str) -> list[str]:
        ctx = make_context(tmp_path, execute=runs, name=name)
        cli = {"base_url": chat_server.url, "model": "m", "scaffold": scaffold, "budget": budget, "branch": 2,
               "n0": 2, "llm_cache": mode, "llm_retries": 0}
        agent = make_llm_agent("local", source=ConfigSource(cli=cli, cache_dir=cache))
        return [agent.solve(ctx).script, *runs.scripts]

    live = session("a", live_runs, "write")
    asked = len(chat_server.chat_requests())
    chat_server.responder = None  # the endpoint answers nothing now
    replay = session("b", replay_runs, "read")
    assert len(chat_server.chat_requests()) == asked == budget
    assert replay == live
