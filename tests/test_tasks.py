from pathlib import Path

import pytest

from fakes import manifest, write_suite
from pytest_speedrun.errors import TaskError
from pytest_speedrun.tasks.manifest import available_suites, find_suite, load_suite, load_task


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path)


def _rewrite(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


def test_valid_manifest_loads_every_field(suite: Path) -> None:
    task = load_task(suite / "mini01.toml")
    assert task.id == "mini01" and task.suite == "mini"
    assert task.start.script.path == (suite / "records/record_1.py").resolve()
    assert task.target.train_time_ms == 500
    assert task.launch.env == {"NANOGPT_VAL_TOKENS": "4096"} and task.launch.timeout_s == 60
    assert sorted(task.hints) == [1, 2, 3]
    assert task.reference == "calibrate" and task.dataset == "tiny"


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ('target_val_loss = 2.0\n', "", "target_val_loss", "missing"),
        ("timeout_s = 60", 'timeout_s = "soon"', "launch.timeout_s", "expected a number, got str"),
        ("nproc_per_node = 1", "nproc_per_node = 1\nnproc = 2", "launch.nproc", "unknown key"),
        ('path = "records/record_2.py"', 'path = "records/nope.py"', "target.script.path", "does not exist"),
        ("train_time_ms = 500", "train_time_ms = 1000", "target.train_time_ms", "must be less than"),
        ('1 = "hints/pseudo.md"', '1 = "hints/gone.md"', "hints.1", "does not exist"),
        ("record = 1", "record = true", "start.record", "expected an integer, got bool"),
    ],
)
def test_malformed_manifest_names_file_and_key(suite: Path, old: str, new: str, key: str, words: str) -> None:
    path = _rewrite(suite / "mini01.toml", old, new)
    with pytest.raises(TaskError) as exc:
        load_task(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: key '{key}'")
    assert words in message
    assert "\n" not in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("id = \n")
    with pytest.raises(TaskError, match=r"bad\.toml: invalid TOML"):
        load_task(path)


def test_downloaded_script_must_be_pinned(suite: Path) -> None:
    path = _rewrite(suite / "mini01.toml", 'script = { path = "records/record_1.py" }',
                    'script = { url = "https://example.org/r1.py" }')
    with pytest.raises(TaskError, match="start.script.sha256': missing"):
        load_task(path)


def test_suite_is_sorted_by_id_and_ids_are_unique(suite: Path) -> None:
    assert [t.id for t in load_suite(suite)] == ["mini01", "mini02"]
    (suite / "zzz.toml").write_text(manifest("mini01", "records/record_1.py", "records/record_2.py"))
    with pytest.raises(TaskError, match="already used"):
        load_suite(suite)


def test_packaged_tiny_suite_is_found_by_name() -> None:
    assert "tiny" in available_suites()
    assert find_suite("tiny").name == "tiny"


def test_unknown_suite_lists_the_available_ones() -> None:
    with pytest.raises(TaskError, match="no such suite; available: .*tiny"):
        find_suite("nonexistent-suite")


def test_every_tiny_manifest_is_valid_and_forms_a_ladder() -> None:
    tasks = load_suite(find_suite("tiny"))
    assert [t.id for t in tasks] == [f"tiny{k:02d}" for k in range(1, len(tasks) + 1)]
    assert len(tasks) >= 4
    for prev, nxt in zip(tasks, tasks[1:]):
        assert prev.target.script.path == nxt.start.script.path
    for t in tasks:
        assert sorted(t.hints) == [1, 2, 3] and t.reference == "calibrate"
