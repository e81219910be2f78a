"""The packaged `nanogpt` suite: the paper's 19 tasks (record i -> i+1 for i in 1..5 and 7..20).

Checks the manifests against the facts in `tasks/nanogpt/reference/records.toml` (a verbatim copy of the
benchmark's reference figures) and checks the shipped hints. Plain unit tests: nothing is downloaded or run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from pytest_speedrun.tasks.manifest import Task, load_suite, load_task

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

SUITE = Path(__file__).resolve().parent.parent / "tasks" / "nanogpt"
REFERENCE = SUITE / "reference" / "records.toml"
RECORDS = [1, 2, 3, 4, 5, *range(7, 21)]  # starting records; 6 -> 7 is excluded (identical scripts)
IDS = [f"task{n:02d}" for n in RECORDS]
EIGHT_RANKS_ONLY = {1, 2, 3, 15, 21}  # records whose scripts assume 8 ranks (no adaptive grad accumulation)
VAL_TOKENS = "10485760"

SHA256 = re.compile(r"[0-9a-f]{64}")
PINNED_URL = re.compile(r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/([0-9a-f]{40})/\S+\.py")
# absolute paths: POSIX paths at the start of a token ("/home/x", "/work/..."), home-relative, Windows drives
ABSOLUTE_PATH = re.compile(r"(?:^|[\s\"'`(\[<=:,])(?:/[\w.-]+/|~/)|\b[A-Za-z]:\\", re.MULTILINE)


@pytest.fixture(scope="module")
def reference() -> dict:
    return tomllib.loads(REFERENCE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def records(reference: dict) -> dict[int, dict]:
    return {r["number"]: r for r in reference["record"]}


@pytest.fixture(scope="module")
def tasks() -> dict[str, Task]:
    return {t.id: t for t in load_suite(SUITE)}


def _raw(task_id: str) -> dict:
    return tomllib.loads((SUITE / f"{task_id}.toml").read_text(encoding="utf-8"))


# --- the suite as a whole ---------------------------------------------------------------------------------


def test_suite_has_exactly_the_19_paper_tasks() -> None:
    assert sorted(p.stem for p in SUITE.glob("*.toml")) == IDS
    loaded = load_suite(SUITE)
    assert [t.id for t in loaded] == IDS
    assert {t.suite for t in loaded} == {"nanogpt"}


def test_reference_file_is_shipped_but_not_a_manifest(reference: dict, records: dict[int, dict]) -> None:
    assert REFERENCE.is_file()
    assert REFERENCE.parent != SUITE  # a subdirectory: the suite loader globs only SUITE/*.toml
    assert all(t.manifest.parent == SUITE for t in load_suite(SUITE))
    assert sorted(records) == list(range(1, 22))
    # why 6 -> 7 is not a task: the two records run the very same script
    assert records[6]["script_sha256"] == records[7]["script_sha256"]
    assert not (SUITE / "task06.toml").exists()


def test_start_times_strictly_decrease_along_the_suite(tasks: dict[str, Task]) -> None:
    starts = [tasks[i].start.train_time_ms for i in IDS]
    assert all(a > b for a, b in zip(starts, starts[1:])), starts


def test_consecutive_tasks_chain_target_to_next_start(tasks: dict[str, Task]) -> None:
    pairs = [(f"task{n:02d}", f"task{n + 1:02d}") for n in RECORDS if n + 1 in RECORDS]
    assert len(pairs) == 17  # 1-2 .. 4-5 and 7-8 .. 19-20
    for this, nxt in pairs:
        a, b = tasks[this].target, tasks[nxt].start
        assert a.record == b.record
        assert (a.script.url, a.script.sha256, a.script.bytes) == (b.script.url, b.script.sha256, b.script.bytes)
        assert (a.train_time_ms, a.steps) == (b.train_time_ms, b.steps)


# --- each manifest ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", RECORDS, ids=IDS)
def test_manifest_loads_and_names_its_records(n: int) -> None:
    task = load_task(SUITE / f"task{n:02d}.toml")
    assert task.id == f"task{n:02d}" and task.suite == "nanogpt"
    assert task.start.record == n and task.target.record == n + 1
    assert task.title.startswith(f"Record {n} -> {n + 1}: ")
    assert task.target.train_time_ms < task.start.train_time_ms
    assert task.dataset == "fineweb" and task.reference == "manifest"


@pytest.mark.parametrize("n", RECORDS, ids=IDS)
def test_script_refs_are_pinned(n: int, tasks: dict[str, Task]) -> None:
    task = tasks[f"task{n:02d}"]
    for end, record in ((task.start, n), (task.target, n + 1)):
        ref = end.script
        assert ref.path is None
        assert SHA256.fullmatch(ref.sha256 or ""), ref.sha256
        assert isinstance(ref.bytes, int) and ref.bytes > 0
        assert PINNED_URL.fullmatch(ref.url or ""), ref.url
        assert f"/record_{record}/" in ref.url
    assert task.start.script.sha256 != task.target.script.sha256


@pytest.mark.parametrize("n", RECORDS, ids=IDS)
def test_figures_match_the_reference(n: int, tasks: dict[str, Task], reference: dict, records: dict[int, dict]) -> None:
    task = tasks[f"task{n:02d}"]
    start, target = records[n], records[n + 1]
    for end, rec in ((task.start, start), (task.target, target)):
        assert end.train_time_ms == rec["measured_train_time_ms"]
        assert end.steps == rec["measured_steps"]
        assert end.script.url == rec["script_url"]
        assert end.script.sha256 == rec["script_sha256"]
        assert end.script.bytes == rec["script_bytes"]
        assert PINNED_URL.fullmatch(end.script.url).group(1) == reference["source"]["commit"]
    assert task.train_shards == max(start["train_shards_needed"], target["train_shards_needed"])
    assert task.launch.runtime == ("torch-2.7-nightly-2025-01" if start["number"] >= 19 else "torch-2.7.1")
    assert task.target_val_loss == reference["source"]["target_val_loss"]


@pytest.mark.parametrize("n", RECORDS, ids=IDS)
def test_launch_settings(n: int, tasks: dict[str, Task], reference: dict) -> None:
    launch = tasks[f"task{n:02d}"].launch
    assert launch.nproc_per_node == 8
    assert launch.env["NANOGPT_VAL_TOKENS"] == VAL_TOKENS == str(reference["data"]["val_tokens"])
    expected = (8,) if {n, n + 1} & EIGHT_RANKS_ONLY else (1, 8)
    assert launch.supported_gpu_counts == expected
    assert 8 in launch.supported_gpu_counts  # every task runs on the paper's 8-GPU node
    assert _raw(f"task{n:02d}")["launch"]["supported_gpu_counts"] == list(expected)


def test_gpu_count_rule_splits_the_suite(tasks: dict[str, Task]) -> None:
    eight_only = sorted(t.id for t in tasks.values() if t.launch.supported_gpu_counts == (8,))
    assert eight_only == ["task01", "task02", "task03", "task14", "task15", "task20"]


# --- hints ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", RECORDS, ids=IDS)
def test_hints_exist_for_every_level(n: int, tasks: dict[str, Task], records: dict[int, dict]) -> None:
    task = tasks[f"task{n:02d}"]
    assert sorted(task.hints) == [1, 2, 3]
    names = {1: "pseudocode.md", 2: "description.md", 3: "paper.md"}
    for level, path in task.hints.items():
        assert path == SUITE / "hints" / task.id / names[level]
        text = path.read_text(encoding="utf-8")
        assert text.strip(), f"{path} is empty"
        if level in (2, 3):
            assert len(text) > 200, f"{path} is too short ({len(text)} characters)"
        assert not ABSOLUTE_PATH.search(text), f"{path} mentions an absolute path: {ABSOLUTE_PATH.search(text)[0]!r}"
        # a hint describes the change; it must not point at the answer script itself
        target = records[n + 1]
        assert target["script_sha256"] not in text and "raw.githubusercontent.com" not in text
        assert "llm-speedrunner" not in text
    words = len(task.hints[3].read_text(encoding="utf-8").split())
    assert 200 <= words <= 400, f"paper hint of {task.id} has {words} words"


def test_no_stray_hint_directories() -> None:
    assert sorted(p.name for p in (SUITE / "hints").iterdir()) == IDS


@pytest.mark.parametrize("text", ["see /work/main/x.py", "cd ~/data", r"C:\Users\me", "(/tmp/a)"])
def test_absolute_path_pattern_catches_paths(text: str) -> None:
    assert ABSOLUTE_PATH.search(text)


@pytest.mark.parametrize("text", ["x / norm(x)", "1/sqrt(2 * n_layer)", "sqrt(max(1, rows/cols))", "(1/1024)"])
def test_absolute_path_pattern_ignores_arithmetic(text: str) -> None:
    assert not ABSOLUTE_PATH.search(text)
