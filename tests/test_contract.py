import pytest

from pytest_speedrun.judging.contract import contract_reasons, env_usage

START = '''\
import os, glob
from dataclasses import dataclass

@dataclass
class Hyperparameters:
    train_files: str = os.environ["NANOGPT_TRAIN_FILES"]
    val_files: str = os.environ["NANOGPT_VAL_FILES"]
    val_tokens: int = int(os.environ.get("NANOGPT_VAL_TOKENS", "10485760"))
'''


def test_reads_are_found_in_every_form() -> None:
    reads, writes = env_usage(START + 'x = os.getenv("NANOGPT_VAL_FILES")\n')
    assert reads["NANOGPT_TRAIN_FILES"] == {"os.environ['NANOGPT_TRAIN_FILES']"}
    assert reads["NANOGPT_VAL_TOKENS"] == {"os.environ.get('NANOGPT_VAL_TOKENS', '10485760')"}
    assert reads["NANOGPT_VAL_FILES"] == {"os.environ['NANOGPT_VAL_FILES']", "os.getenv('NANOGPT_VAL_FILES')"}
    assert writes == []


def test_an_unchanged_or_reorganised_script_keeps_the_contract() -> None:
    assert contract_reasons(START, START) == []
    moved = START.replace("    val_tokens: int = int(", "    other: int = 3\n    val_tokens: int = int(")
    assert contract_reasons(START, moved + "\nprint('hi')\n") == []


def test_hard_coding_the_validation_size_is_caught() -> None:
    cheat = START.replace('int(os.environ.get("NANOGPT_VAL_TOKENS", "10485760"))', "65536")
    (reason,) = contract_reasons(START, cheat)
    assert reason == ("train_gpt2.py no longer reads NANOGPT_VAL_TOKENS from the environment as the start script "
                      "does (expected os.environ.get('NANOGPT_VAL_TOKENS', '10485760'))")


def test_pointing_training_at_the_validation_files_is_caught() -> None:
    cheat = START.replace('os.environ["NANOGPT_TRAIN_FILES"]', 'os.environ["NANOGPT_VAL_FILES"]')
    assert any("NANOGPT_TRAIN_FILES" in r for r in contract_reasons(START, cheat))


@pytest.mark.parametrize("write", [
    'os.environ["NANOGPT_VAL_TOKENS"] = "1024"',
    'os.environ.update({"NANOGPT_VAL_TOKENS": "1024"})',
    'os.putenv("NANOGPT_VAL_TOKENS", "1024")',
    'os.environ.setdefault("NANOGPT_VAL_TOKENS", "1024")',
    'del os.environ["NANOGPT_VAL_FILES"]',
])
def test_overwriting_a_protected_variable_is_caught(write: str) -> None:
    reasons = contract_reasons(START, "import os\n" + write + "\n" + START)
    assert any("overwrites a protected variable" in r for r in reasons), reasons


def test_unparsable_solution_is_left_to_crash() -> None:
    assert contract_reasons(START, "def broken(:\n") == []
