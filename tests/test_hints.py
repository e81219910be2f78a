from pathlib import Path

import pytest

from fakes import write_suite
from pytest_speedrun.errors import UsageError
from pytest_speedrun.tasks.hints import hint_text, parse_regimes, regime_label
from pytest_speedrun.tasks.manifest import load_task


def test_regimes_parse_in_order_without_duplicates() -> None:
    assert parse_regimes("0,1,2,3,1+2,2+1,1+2+3") == [(), (1,), (2,), (3,), (1, 2), (1, 2, 3)]
    assert [regime_label(r) for r in parse_regimes("0,1+2")] == ["0", "1+2"]


@pytest.mark.parametrize("spec", ["4", "1+1", "a", "1,,2", "0+1"])
def test_bad_regime_is_a_usage_error_naming_the_option(spec: str) -> None:
    with pytest.raises(UsageError, match="--speedrun-hints"):
        parse_regimes(spec)


def test_hint_text_concatenates_the_levels_in_order(tmp_path: Path) -> None:
    task = load_task(write_suite(tmp_path) / "mini01.toml")
    assert hint_text(task, ()) is None
    text = hint_text(task, (1, 3))
    assert text is not None
    assert text.index("level 1: pseudocode") < text.index("x = faster(x)") < text.index("level 3: mini-paper")
    assert "Make it faster" not in text


def _paper_layout(root: Path) -> Path:
    for record, text in ((1, "paper hint for 1 to 2"), (2, "paper hint for 2 to 3")):
        folder = root / f"record_{record}"
        folder.mkdir(parents=True)
        (folder / "level_1_pseudocode.txt").write_text(f"pseudo: {text}\n")
        (folder / "level_2_text.txt").write_text(f"text: {text}\n")
    return root


def test_hints_in_the_papers_layout_replace_the_suites(tmp_path: Path) -> None:
    from pytest_speedrun.tasks.hints import external_hints, with_external_hints

    task = load_task(write_suite(tmp_path / "s") / "mini01.toml")
    hints_dir = _paper_layout(tmp_path / "paper")
    assert sorted(external_hints(hints_dir, task)) == [1, 2]
    replaced = with_external_hints(task, hints_dir)
    assert "pseudo: paper hint for 1 to 2" in hint_text(replaced, (1,))
    with pytest.raises(UsageError, match="has no hint level 3"):
        hint_text(replaced, (3,))


def test_a_task_missing_from_the_hints_dir_is_a_clear_error(tmp_path: Path) -> None:
    from pytest_speedrun.tasks.hints import with_external_hints

    task = load_task(write_suite(tmp_path / "s") / "mini01.toml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no record_1/level_\*_\*.txt for task mini01"):
        with_external_hints(task, tmp_path / "empty")


def test_hints_dir_reaches_the_agents_workspace(pytester: pytest.Pytester, cache_dir: Path) -> None:
    import json

    suite = write_suite(pytester.path / "suites")
    hints_dir = _paper_layout(pytester.path / "paper")
    result = pytester.runpytest(f"--speedrun-suite={suite}", "--speedrun-agent=baseline", "-k", "mini01",
                                "--speedrun-hints=1+2", f"--speedrun-hints-dir={hints_dir}",
                                f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (record,) = [json.loads(ln) for ln in (pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()]
    hints = (Path(record["artifact_dir"]) / "workspace" / "hints.md").read_text()
    assert "pseudo: paper hint for 1 to 2" in hints and "text: paper hint for 1 to 2" in hints
