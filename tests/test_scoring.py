import pytest

from pytest_speedrun.results.scoring import score


def test_fsr_is_fraction_of_speedup_recovered() -> None:
    s = score(train_time_ms=850, t_start_ms=1000, t_target_ms=700)
    assert s.fsr == pytest.approx(0.5) and s.speedup == pytest.approx(1000 / 850)


@pytest.mark.parametrize(("t", "fsr"), [(1000, 0.0), (700, 1.0), (600, 4 / 3), (1300, -1.0)])
def test_fsr_anchors(t: float, fsr: float) -> None:
    assert score(t, 1000, 700).fsr == pytest.approx(fsr)


def test_reference_times_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="must be less than"):
        score(500, 700, 700)
