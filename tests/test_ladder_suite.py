"""The packaged `ladder` suite (issues 21, 22): its manifests, the CI check of its reference times (tracks 1, 2) and
step counts (track 3) against the independently extracted figures (tasks/ladder/reference/ladder_refs.toml),
EXCLUDED.md, and selection with -m and -k.

Plain unit tests plus three pytester collections: nothing is downloaded or run.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_speedrun.files import tomllib
from pytest_speedrun.judging.status import STEPS, TIME
from pytest_speedrun.tasks.manifest import Task, find_suite, load_suite
from pytest_speedrun.tasks.runtimes import task_runtime

SUITE = Path(__file__).resolve().parent.parent / "tasks" / "ladder"
COMMIT = "f411b3d346aa52d3504324ca93c230fd84c6c07f"
PINNED_LOG = re.compile(rf"https://raw\.githubusercontent\.com/KellerJordan/modded-nanogpt/{COMMIT}/records/"
                        r"(track_[12]_(short|medium)|track_3_optimization/results)/\S+\.(txt|log)")
ID = re.compile(r"t([123])_(\d{3})_(\d{3})")
TRACK3_TASKS = 11
TRACK3_ROWS = 46  # the README's "Notable results history"
TOLERANCE_MS = 0.5  # our means are rounded to 0.1 ms, the facts' group means too


@pytest.fixture(scope="module")
def tasks() -> list[Task]:
    return load_suite(SUITE)


@pytest.fixture(scope="module")
def refs() -> dict[tuple[int, int], dict]:
    raw = tomllib.loads((SUITE / "reference" / "ladder_refs.toml").read_text(encoding="utf-8"))
    return {(r["track"], r["row"]): r for r in raw["record"]}


def expected_ms(ref: dict) -> float:
    """A record's reference time from the facts: the mean of its runs (less truncated ones), or its group's mean."""
    if "group_mean_ms" in ref:
        return float(ref["group_mean_ms"])
    runs = list(ref["train_time_ms"])
    for x in ref.get("truncated_ms", []):
        runs.remove(x)
    return sum(runs) / len(runs)


def reference_mismatches(tasks: list[Task], refs: dict[tuple[int, int], dict]) -> list[str]:
    """Every time task's end whose pinned train_time_ms differs from the facts' figure by more than the rounding."""
    bad = []
    for task in (t for t in tasks if t.metric == TIME):
        for which, end in (("start", task.start), ("target", task.target)):
            ref = refs.get((task.track or 0, end.record))
            if ref is None:
                bad.append(f"{task.id} {which}: record {end.record} has no figures in ladder_refs.toml")
            elif abs(end.train_time_ms - expected_ms(ref)) > TOLERANCE_MS:
                bad.append(f"{task.id} {which}: pinned {end.train_time_ms} ms, the facts say {expected_ms(ref):.1f} ms")
    return bad


def test_the_suite_is_found_by_name_and_holds_three_tracks(tasks: list[Task]) -> None:
    assert find_suite("ladder") == SUITE.resolve()
    counts = {t: sum(task.track == t for task in tasks) for t in (1, 2, 3)}
    assert counts == {1: 44, 2: 11, 3: TRACK3_TASKS}
    assert {task.metric for task in tasks if task.track == 3} == {STEPS}
    assert {task.metric for task in tasks if task.track != 3} == {TIME}


def test_pinned_reference_times_match_the_independent_figures(tasks, refs) -> None:
    assert reference_mismatches(tasks, refs) == []


def test_a_changed_reference_time_is_caught(tasks, refs) -> None:
    changed = [replace(tasks[3], target=replace(tasks[3].target, train_time_ms=tasks[3].target.train_time_ms + 1.0))]
    assert len(reference_mismatches(changed, refs)) == 1
    assert reference_mismatches(changed, {}) != []  # a record without figures is caught too


def test_ids_name_track_and_records_so_dash_k_selects_one(tasks: list[Task]) -> None:
    for task in tasks:
        m = ID.fullmatch(task.id)
        assert m, task.id
        assert (int(m[1]), int(m[2]), int(m[3])) == (task.track, task.start.record, task.target.record)
        assert task.manifest.name == f"{task.id}.toml"


def steps_mismatches(tasks: list[Task], refs: dict[tuple[int, int], dict]) -> list[str]:
    """Every steps task's end whose steps or pinned log differ from the facts' README-linked log."""
    bad = []
    for task in (t for t in tasks if t.metric == STEPS):
        for which, end in (("start", task.start), ("target", task.target)):
            ref = refs.get((task.track or 0, end.record))
            if ref is None:
                bad.append(f"{task.id} {which}: row {end.record} has no figures in ladder_refs.toml")
            elif end.steps != ref["steps"] or Path(end.script.url or "").name != Path(ref["log"]).name:
                bad.append(f"{task.id} {which}: pinned {end.steps} steps of {end.script.url}, the facts say "
                           f"{ref['steps']} of {ref['log']}")
    return bad


def test_track3_steps_match_the_independent_figures_and_fall(tasks, refs) -> None:
    assert steps_mismatches(tasks, refs) == []
    for task in (t for t in tasks if t.track == 3):
        assert task.target_val_loss == 3.28 and task.reference == "manifest"
        assert task.target.steps is not None and task.start.steps is not None
        assert task.target.steps < task.start.steps, task.id


def test_a_changed_track3_step_count_is_caught(tasks, refs) -> None:
    t3 = next(t for t in tasks if t.track == 3)
    changed = [replace(t3, target=replace(t3.target, steps=(t3.target.steps or 0) + 25))]
    assert len(steps_mismatches(changed, refs)) == 1
    assert steps_mismatches([t3], {}) != []


def test_each_track_is_one_chain_starting_after_the_paper(tasks: list[Task]) -> None:
    for track, first in ((1, 21), (2, 2)):
        chain = [t for t in tasks if t.track == track]
        assert chain[0].start.record == first
        for a, b in zip(chain, chain[1:]):
            assert a.target.record == b.start.record and a.target.train_time_ms == b.start.train_time_ms
            assert a.target.script == b.start.script


def test_scripts_are_cut_from_pinned_logs_with_companions_by_name(tasks: list[Task]) -> None:
    for task in tasks:
        for end in (task.start, task.target):
            for ref in (end.script, *(sub for _, sub in end.script.files)):
                assert PINNED_LOG.fullmatch(ref.url or ""), ref.url
                assert ref.cut is not None and ref.log_sha256 and ref.bytes and ref.sha256
            assert {name for name, _ in end.script.files} <= {"triton_kernels.py", "dc_triton_kernels.py"}
    several = {e.record for t in tasks for e in (t.start, t.target) if e.script.files}
    assert min(several) == 61 and 85 in several


def test_every_task_names_a_runtime_and_time_tasks_a_level_two_hint(tasks: list[Task]) -> None:
    for task in tasks:
        runtime = task_runtime(task)
        assert runtime is not None and runtime.torch[0] == "2"
        if task.track == 3:  # ladder_hints.py holds no words for track 3
            assert task.hints == {}
            continue
        assert list(task.hints) == [2]
        text = task.hints[2].read_text(encoding="utf-8")
        assert f"record {task.target.record}:" in text and len(text) < 2000


def test_every_record_folder_is_used_or_listed(refs) -> None:
    excluded = (SUITE / "EXCLUDED.md").read_text(encoding="utf-8")
    rows = [ln for ln in excluded.splitlines() if re.match(r"\| [12] \| ", ln)]
    assert sum(ln.startswith("| 1 |") for ln in rows) == 98 and sum(ln.startswith("| 2 |") for ln in rows) == 17
    assert all(ln.rstrip(" |").split("| ")[-1].strip() for ln in rows)  # every folder has a status
    used = {(int(ln[2]), ln.split("|")[2].strip()) for ln in rows if "| used: record" in ln}
    assert {(r["track"], r["dir"]) for r in refs.values() if r["track"] != 3} == used


def track3_rows() -> dict[int, list[str]]:
    excluded = (SUITE / "EXCLUDED.md").read_text(encoding="utf-8")
    return {int(m[1]): [c.strip() for c in m[2].split("|")]
            for m in re.finditer(r"^\| 3 \| (\d+) \| (.*) \|$", excluded, re.MULTILINE)}


def test_every_track3_row_is_used_or_excluded_with_a_reason(tasks: list[Task]) -> None:
    rows = track3_rows()
    assert sorted(rows) == list(range(1, TRACK3_ROWS + 1))
    in_tasks = {e.record for t in tasks if t.track == 3 for e in (t.start, t.target)}
    for no, (_, _, status) in rows.items():
        if no in in_tasks:
            assert status.startswith("used: t3_"), (no, status)
        else:
            kind, _, reason = status.partition(": ")
            assert kind in ("excluded", "in no task") and len(reason) > 20, (no, status)
    excluded = {no for no, cells in rows.items() if cells[2].startswith("excluded: ")}
    assert {12, 32, 33, 34, 41, 42, 45} <= excluded  # README 3325 vs log 3350; five README-only; stopped at 2720
    assert "README 3325" in rows[12][2] and "step:3350/3350" in rows[12][2]
    assert "stops early on purpose" in rows[45][2]


# --- selection through pytest ------------------------------------------------------------------------------

def _collect(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest("--speedrun-suite=ladder", "--collect-only", "-q", "-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    return [ln.split("::")[1] for ln in result.stdout.lines if "::" in ln]


def test_collect_only_collects_every_ladder_task(pytester: pytest.Pytester) -> None:
    ids = _collect(pytester)
    assert len(ids) == 55 + TRACK3_TASKS and ids[0] == "t1_021_022[h0-s0]"


def test_dash_m_track2_selects_that_track(pytester: pytest.Pytester) -> None:
    ids = _collect(pytester, "-m", "track2")
    assert len(ids) == 11 and all(i.startswith("t2_") for i in ids)


def test_dash_m_track3_selects_the_steps_tasks(pytester: pytest.Pytester) -> None:
    ids = _collect(pytester, "-m", "track3")
    assert len(ids) == TRACK3_TASKS and all(i.startswith("t3_") for i in ids) and "t3_002_003[h0-s0]" in ids


def test_dash_k_selects_a_single_task(pytester: pytest.Pytester) -> None:
    assert _collect(pytester, "-k", "t1_081_085") == ["t1_081_085[h0-s0]"]
