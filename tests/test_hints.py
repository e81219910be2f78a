from pathlib import Path

import pytest

from fakes import write_suite
from pytest_speedrun.errors import UsageError
from pytest_speedrun.hints import hint_text, parse_regimes, regime_label
from pytest_speedrun.tasks import load_task


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
