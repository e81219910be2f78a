
import pytest

from pytest_speedrun.agents import AgentContext, make_agent
from pytest_speedrun.agents.registry import available_agents
from pytest_speedrun.errors import AgentError, UsageError


def test_workspace_holds_start_script_and_hints_but_not_the_target(ctx: AgentContext) -> None:
    assert sorted(p.name for p in ctx.workspace.iterdir()) == ["hints.md", "train_gpt2.py"]
    assert ctx.start_script == ctx.task.start.script.path.read_text()


def test_baseline_returns_the_start_script(ctx: AgentContext) -> None:
    assert make_agent("baseline").solve(ctx).script == ctx.start_script


def test_oracle_returns_the_target_script(ctx: AgentContext) -> None:
    assert make_agent("oracle").solve(ctx).script == ctx.task.target.script.path.read_text()


def test_unknown_agent_lists_the_available_ones() -> None:
    with pytest.raises(UsageError, match=r"unknown agent 'nope'; available: baseline, command:<shell command>, oracle"):
        make_agent("nope")
    assert "oracle" in available_agents()


def test_extra_factories_extend_the_registry(ctx: AgentContext) -> None:
    class Echo:
        name = "echo"

        def __init__(self, arg: str | None) -> None:
            self.arg = arg

        def solve(self, c: AgentContext):  # noqa: ANN201
            from pytest_speedrun.agents import Solution
            return Solution(script=f"# {self.arg}\n" + c.start_script)

    agent = make_agent("echo:hi", extra={"echo": Echo})
    assert agent.solve(ctx).script.startswith("# hi\n")


def test_command_agent_gets_the_documented_env_and_edits_in_place(ctx: AgentContext) -> None:
    cmd = ('echo "$SPEEDRUN_TASK_ID $SPEEDRUN_HINT_LEVELS $SPEEDRUN_TARGET_VAL_LOSS $SPEEDRUN_SEED" && '
           'test -f "$SPEEDRUN_HINTS_FILE" && test "$SPEEDRUN_WORKSPACE" = "$PWD" && '
           'echo "# edited" >> "$SPEEDRUN_SCRIPT"')
    solution = make_agent(f"command:{cmd}").solve(ctx)
    assert solution.script.endswith("# edited\n")
    assert solution.transcript.strip() == "mini01 1 2 4"
    assert (ctx.artifacts_dir / "agent.log").exists()


def test_command_agent_nonzero_exit_is_an_agent_error(ctx: AgentContext) -> None:
    with pytest.raises(AgentError, match="exited with code 7: giving up"):
        make_agent("command:echo giving up; exit 7").solve(ctx)


def test_command_agent_timeout_is_an_agent_error(ctx: AgentContext) -> None:
    ctx = AgentContext(**{**ctx.__dict__, "timeout_s": 0.5})
    with pytest.raises(AgentError, match="timed out after 0.5 s"):
        make_agent("command:sleep 30").solve(ctx)


def test_command_agent_needs_a_command() -> None:
    with pytest.raises(UsageError, match="needs a shell command"):
        make_agent("command:")


def test_a_command_agent_works_inside_the_items_lease(run, pytester) -> None:
    """A command agent may train to try ideas: it gets the item's cores (pinned) and the data contract."""
    import json as _json

    from pytest_speedrun.execution.resources import run_cores

    probe = pytester.path / "probe.json"
    agent = (f"command:python -c \"import json, os; json.dump({{'cores': sorted(os.sched_getaffinity(0)), "
             f"'omp': os.environ.get('OMP_NUM_THREADS'), 'train': os.environ.get('NANOGPT_TRAIN_FILES')}}, "
             f"open('{probe}', 'w'))\"")
    result = run(f"--speedrun-agent={agent}", "-k", "mini02")
    result.assert_outcomes(passed=1)
    seen = _json.loads(probe.read_text())
    assert seen["cores"] == run_cores()[: len(seen["cores"])] and seen["omp"] == str(len(seen["cores"]))
    assert seen["train"] and seen["train"].endswith(".bin")
