"""The static rules' caches (issue 23): the start and target scripts' analyses are computed once per process and
reused, and a cached analysis still catches an attack in the solution judged against it."""

from __future__ import annotations

from pytest_speedrun.judging import contract, nearcopy, valpath
from pytest_speedrun.judging.static_rules import static_reasons
from pytest_speedrun.tasks.manifest import find_suite, load_task

TASK = load_task(find_suite("tiny") / "tiny02.toml")
START = TASK.start.script.path.read_text(encoding="utf-8")
TARGET = TASK.target.script.path.read_text(encoding="utf-8")


def _scaled(source: str) -> str:
    """The printed val_loss scaled down by 1%: the val-path rule's attack."""
    marker = "val_loss:{"
    at = source.index(marker) + len(marker)
    end = source.index("}", at)
    expr, spec = (source[at:end].split(":", 1) + [""])[:2]
    return source[:at] + f"({expr}) * 0.99" + (f":{spec}" if spec else "") + source[end:]


def test_the_start_scripts_data_flow_is_followed_once_and_still_catches_a_scaled_loss() -> None:
    attack = _scaled(START)
    assert valpath.val_path_reasons(START, attack)  # the first judgement fills the cache
    before = valpath._val_paths.cache_info()
    for _ in range(3):
        reasons = valpath.val_path_reasons(START, attack)
        assert reasons and "val path" in reasons[0]
    after = valpath._val_paths.cache_info()
    assert after.hits - before.hits == 6 and after.misses == before.misses  # start and solution, 3 times
    assert valpath.val_path_reasons(START, START) == []


def test_the_env_contract_analysis_is_cached_and_the_caller_cannot_spoil_it() -> None:
    reads, writes = contract.env_usage(START)
    reads["NANOGPT_VAL_FILES"].clear()  # a caller's change to its copy
    writes.append("os.environ['X'] = 'y'")
    again, again_writes = contract.env_usage(START)
    assert again["NANOGPT_VAL_FILES"] and again_writes == []
    attack = START + '\nos.environ["NANOGPT_VAL_TOKENS"] = "1024"\n'
    hits = contract._env_usage_cached.cache_info().hits
    assert any("overwrites a protected variable" in r for r in contract.contract_reasons(START, attack))
    assert contract._env_usage_cached.cache_info().hits > hits  # the start script came from the cache


def test_the_targets_tokens_are_cached_and_a_renamed_copy_is_still_caught() -> None:
    renamed = TARGET.replace("num_heads", "heads_renamed")  # a name no string of the script holds
    assert renamed != TARGET and "num_heads" in TARGET
    first = nearcopy.near_copy_reasons(renamed, TARGET)
    misses = nearcopy._code_tokens.cache_info().misses
    second = nearcopy.near_copy_reasons(renamed, TARGET)
    assert first == second and first and "renamed" in first[0]
    assert nearcopy._code_tokens.cache_info().misses == misses  # both scripts from the cache
    assert nearcopy.near_copy_reasons(START, TARGET) == []


def test_unparsable_text_is_not_cached_as_an_answer() -> None:
    broken = START + "\ndef (:\n"
    assert contract.contract_reasons(START, broken) == []
    assert valpath.val_path_reasons(START, broken) == []
    assert static_reasons(START, _scaled(START), TARGET)[1]  # the rules still judge after a failure
