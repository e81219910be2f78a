"""The edit parser: SEARCH/REPLACE blocks and whole files, as models actually write them."""

from __future__ import annotations

import pytest

from pytest_speedrun.agents.edits import EditError, apply_answer, parse_blocks, strip_reasoning

SCRIPT = '''\
import os

class Hyperparameters:
    batch_size: int = 32
    num_iterations: int = 100
    lr: float = 0.02


def main():
    args = Hyperparameters()
    for step in range(args.num_iterations):
        if step % 10 == 0:
            print(step)
    print("done")


main()
'''


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE"


def test_a_search_replace_block_in_a_fence_is_applied() -> None:
    edit = apply_answer(SCRIPT, "Fewer steps.\n\n```python\n" + block("    num_iterations: int = 100",
                                                                      "    num_iterations: int = 90") + "\n```\n")
    assert "num_iterations: int = 90" in edit.script and "int = 100" not in edit.script
    assert (edit.form, edit.blocks, edit.plan) == ("search-replace", 1, "Fewer steps.")


def test_several_blocks_apply_in_order() -> None:
    answer = "\n\n".join([block("    batch_size: int = 32", "    batch_size: int = 16"),
                          block('    print("done")', '    print("finished")')])
    edit = apply_answer(SCRIPT, answer)
    assert "batch_size: int = 16" in edit.script and 'print("finished")' in edit.script
    assert edit.blocks == 2


def test_trailing_whitespace_and_blank_edge_lines_are_tolerated() -> None:
    answer = block("\n    lr: float = 0.02   \n", "    lr: float = 0.04")
    assert "lr: float = 0.04" in apply_answer(SCRIPT, answer).script


def test_indentation_drift_is_tolerated_and_the_replacement_shifted_alike() -> None:
    search = "for step in range(args.num_iterations):\n    if step % 10 == 0:\n        print(step)"
    replace = "for step in range(args.num_iterations):\n    if step % 20 == 0:\n        print(step, flush=True)"
    script = apply_answer(SCRIPT, block(search, replace)).script
    assert "    for step in range(args.num_iterations):\n        if step % 20 == 0:\n" \
           "            print(step, flush=True)\n" in script


def test_a_block_matching_two_places_is_refused_with_the_lines() -> None:
    script = SCRIPT + "\nx = 1\nx = 1\n"
    with pytest.raises(EditError, match=r"block 1 matches 2 places \(lines \d+, \d+\)"):
        apply_answer(script, block("x = 1", "x = 2"))


def test_a_block_that_does_not_match_names_the_closest_line() -> None:
    with pytest.raises(EditError, match=r"block 1 does not match .* line 5: 'num_iterations: int = 100'"):
        apply_answer(SCRIPT, block("    num_iterations: int = 1000", "    num_iterations: int = 90"))


def test_an_unclosed_block_is_refused() -> None:
    with pytest.raises(EditError, match="block 1 is not closed"):
        parse_blocks("<<<<<<< SEARCH\n    lr: float = 0.02\n=======\n    lr: float = 0.04\n")


def test_a_whole_file_in_a_fence_replaces_the_script() -> None:
    new = SCRIPT.replace("0.02", "0.03")
    edit = apply_answer(SCRIPT, f"Here is the file.\n```python\n{new}```\nGood luck.")
    assert edit.script == new and edit.form == "whole-file"


def test_a_fragment_is_not_taken_for_the_whole_file() -> None:
    with pytest.raises(EditError, match="the code block has 1 lines and the script has"):
        apply_answer(SCRIPT, "```python\nlr = 0.03\n```")


def test_reasoning_blocks_are_stripped_before_parsing() -> None:
    decoy = block("    lr: float = 0.02", "    lr: float = 9.9")
    answer = f"<think>maybe\n{decoy}\n</think>\n" + block("    lr: float = 0.02", "    lr: float = 0.03")
    assert "lr: float = 0.03" in apply_answer(SCRIPT, answer).script
    assert strip_reasoning("a</think>b") == "b" and strip_reasoning("a<think>cut off") == "a"


def test_an_edit_that_breaks_the_syntax_is_refused() -> None:
    with pytest.raises(EditError, match="does not compile: line 5"):
        apply_answer(SCRIPT, block("    num_iterations: int = 100", "    num_iterations: int = (100"))


def test_an_answer_without_an_edit_is_refused() -> None:
    with pytest.raises(EditError, match="neither SEARCH/REPLACE blocks nor a complete script"):
        apply_answer(SCRIPT, "I would lower the learning rate.")
    with pytest.raises(EditError, match="unchanged"):
        apply_answer(SCRIPT, block("    lr: float = 0.02", "    lr: float = 0.02"))
