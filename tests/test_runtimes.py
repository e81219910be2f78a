"""Runtime definitions (tasks/runtimes.py): the schema, its errors, and that every nanogpt task states one."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_speedrun.errors import TaskError
from pytest_speedrun.tasks.manifest import find_suite, load_suite, load_task
from pytest_speedrun.tasks.runtimes import load_runtime, suite_runtimes, task_runtime

GOOD = 'description = "d"\npython = "3.12"\ntorch = "2.7.1"\nrequirements = ["torch==2.7.1"]\n'


def test_every_nanogpt_task_states_a_runtime_its_suite_defines() -> None:
    suite = find_suite("nanogpt")
    defined = suite_runtimes(suite)
    tasks = load_suite(suite)
    assert len(tasks) == 19
    for task in tasks:
        runtime = task_runtime(task)
        assert runtime is not None and runtime.name in defined, task.id
    by_id = {t.id: task_runtime(t) for t in tasks}
    assert {by_id[f"task{n:02d}"].name for n in (1, 5, 17, 18)} == {"torch-2.7.1"}
    assert {by_id["task19"].name, by_id["task20"].name} == {"torch-2.7-nightly-2025-01"}
    assert by_id["task19"].user_wheel and not by_id["task01"].user_wheel


def test_tiny_tasks_run_in_the_current_interpreter() -> None:
    assert all(task_runtime(t) is None for t in load_suite(find_suite("tiny")))


def test_torch_matches_by_prefix(tmp_path: Path) -> None:
    (tmp_path / "r.toml").write_text(GOOD)
    runtime = load_runtime(tmp_path / "r.toml")
    assert runtime.torch_matches("2.7.1+cu126")
    assert not runtime.torch_matches("2.7.0") and not runtime.torch_matches(None)


@pytest.mark.parametrize("text, key", [
    (GOOD + "colour = 1\n", "colour"),
    (GOOD.replace('python = "3.12"\n', ""), "python"),
    (GOOD.replace('"3.12"', '"twelve"'), "python"),
    (GOOD.replace('["torch==2.7.1"]', '"torch"'), "requirements"),
    (GOOD.replace('["torch==2.7.1"]', "[]"), "requirements"),
    (GOOD + "user_wheel = 1\n", "user_wheel"),
])
def test_a_bad_runtime_file_names_the_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(TaskError, match=rf"r\.toml: key '{key}'"):
        load_runtime(path)


def test_a_manifest_naming_an_undefined_runtime_is_an_error(tmp_path: Path) -> None:
    tiny01 = find_suite("tiny") / "tiny01.toml"
    text = tiny01.read_text().replace("[launch]\n", '[launch]\nruntime = "nope"\n')
    text = text.replace('path = "', f'path = "{tiny01.parent}/')  # keep the record paths valid from tmp_path
    (tmp_path / "t.toml").write_text(text)
    with pytest.raises(TaskError, match=r"key 'launch.runtime': no runtime 'nope'.*runtimes/nope.toml"):
        load_task(tmp_path / "t.toml")
