import math
from pathlib import Path

import pytest

from pytest_speedrun.results.stats import (
    DEFAULT_PAPER_TABLE,
    PaperTableError,
    aggregate,
    bootstrap_ci,
    iqm,
    load_paper_table,
    mean_std,
    one_sided_ttest_below,
    paper_comparison,
    paper_model_name,
    regularized_incomplete_beta,
    student_t_cdf,
)


def record(task: str, seed: int, status: str = "passed", fsr: float | None = None, **config) -> dict:
    rec = {"task": task, "suite": "tiny", "agent": "oracle", "hints": "0", "seed": seed, "status": status,
           "reasons": [], "fsr": fsr if status == "passed" else None}
    rec.update(config)
    return rec


# ------------------------------------------------------------------------------------------------- mean / IQM


def test_mean_std_uses_sample_std_and_zero_for_one_value() -> None:
    assert mean_std([2.0]) == (2.0, 0.0)
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, math.sqrt(5 / 3)))


@pytest.mark.parametrize(("values", "expected"), [
    ([7.0], 7.0),
    ([1.0, 2.0, 3.0], 2.0),                       # n // 4 == 0: nothing trimmed
    ([4.0, 1.0, 3.0, 2.0], 2.5),                  # mean of 2 and 3
    ([1.0, 2.0, 3.0, 100.0], 2.5),                # the outlier is trimmed
    ([1.0, 2.0, 3.0, 5.0, 10.0], 10 / 3),         # drop 1 per end: mean of 2, 3, 5
    ([1.0, 0.0, 0.6, 0.9, 0.6, 0.8], 0.725),      # drop 1 per end: mean of 0.6, 0.6, 0.8, 0.9
    ([float(i) for i in range(1, 9)], 4.5),       # drop 2 per end: mean of 3..6
])
def test_iqm_is_scipy_style_25_percent_trimmed_mean(values: list[float], expected: float) -> None:
    assert iqm(values) == pytest.approx(expected)


@pytest.mark.parametrize(("values", "expected"), [
    ([1.0, 2.0, 3.0], 2.0),                                 # weights 1/4, 1, 1/4 over a width of 1.5
    ([1.0, 2.0, 3.0, 5.0, 10.0], (1.5 + 3 + 3.75) / 2.5),   # weights 3/4, 1, 3/4 on 2, 3, 5
    ([0.0, 0.6, 0.6, 0.8, 0.9, 1.0], (0.3 + 0.6 + 0.8 + 0.45) / 3),  # weights 1/2, 1, 1, 1/2
    ([4.0, 1.0, 3.0, 2.0], 2.5),                            # n divisible by 4: same as the trimmed mean
])
def test_fractional_iqm_weights_boundary_values(values: list[float], expected: float) -> None:
    assert iqm(values, fractional=True) == pytest.approx(expected)


def test_iqm_rejects_empty_and_non_finite_input() -> None:
    with pytest.raises(ValueError, match="no values"):
        iqm([])
    with pytest.raises(ValueError, match="finite"):
        iqm([1.0, float("nan")])


# -------------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_of_constant_values_is_a_point() -> None:
    assert bootstrap_ci([0.4] * 6) == pytest.approx((0.4, 0.4))
    assert bootstrap_ci([0.7]) == pytest.approx((0.7, 0.7))


def test_bootstrap_ci_of_two_point_mean() -> None:
    # Resample means of [0, 1] are 0, 0.5, 1 with probability 1/4, 1/2, 1/4: the 95% interval spans [0, 1],
    # the 40% interval (quantiles 0.3 and 0.7) falls inside the 0.5 mass.
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert bootstrap_ci([0.0, 1.0], mean) == (0.0, 1.0)
    assert bootstrap_ci([0.0, 1.0], mean, level=0.4) == (0.5, 0.5)


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    values = [0.1, 0.5, 0.2, 0.9, 0.0, 0.7, 0.3, 0.4]
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_bootstrap_interval_brackets_statistic_and_narrows_with_level() -> None:
    values = [0.1, 0.5, 0.2, 0.9, 0.0, 0.7, 0.3, 0.4, 0.6, 0.8]
    lo95, hi95 = bootstrap_ci(values)
    lo50, hi50 = bootstrap_ci(values, level=0.5)
    assert lo95 <= lo50 <= iqm(values) <= hi50 <= hi95
    assert lo95 < hi95


def test_bootstrap_rejects_bad_level() -> None:
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=95)


# ------------------------------------------------------------------------------------------------------ t-test


def test_incomplete_beta_closed_forms() -> None:
    # I_x(1, 1) = x;  I_x(a, 1) = x^a;  I_x(1, b) = 1 - (1 - x)^b
    assert regularized_incomplete_beta(1, 1, 0.3) == pytest.approx(0.3, rel=1e-12)
    assert regularized_incomplete_beta(2.5, 1, 0.6) == pytest.approx(0.6 ** 2.5, rel=1e-12)
    assert regularized_incomplete_beta(1, 4, 0.8) == pytest.approx(1 - 0.2 ** 4, rel=1e-12)


def test_student_t_cdf_closed_forms() -> None:
    # df = 1 is the Cauchy distribution; df = 2 has F(t) = 1/2 + t / (2 sqrt(2 + t^2)).
    assert student_t_cdf(-1.0, 1) == pytest.approx(0.25, rel=1e-12)
    assert student_t_cdf(3.0, 1) == pytest.approx(0.5 + math.atan(3.0) / math.pi, rel=1e-12)
    assert student_t_cdf(-1.5, 2) == pytest.approx(0.5 - 1.5 / (2 * math.sqrt(2 + 1.5 ** 2)), rel=1e-12)
    assert student_t_cdf(0.0, 7) == pytest.approx(0.5)


# Reference p-values: scipy 1.17.1, scipy.stats.ttest_1samp(values, threshold, alternative="less").pvalue,
# computed once by hand in a shell (scipy is not a dependency).
@pytest.mark.parametrize(("values", "threshold", "p"), [
    ([3.275, 3.278, 3.281, 3.276, 3.279], 3.28, 0.05419621901115616),
    ([3.2795, 3.2801, 3.2783], 3.28, 0.15843497446795562),
    ([1.0, 2.0, 3.0, 4.0], 5.0, 0.015233145831085489),
    ([3.29, 3.30], 3.28, 0.8975836176504361),
    ([3.2701, 3.2712, 3.2695, 3.2708, 3.2699, 3.2703, 3.2711, 3.2690], 3.28, 1.7727979699984831e-09),
])
def test_ttest_matches_scipy_reference(values: list[float], threshold: float, p: float) -> None:
    assert one_sided_ttest_below(values, threshold) == pytest.approx(p, rel=1e-9)


def test_ttest_by_hand() -> None:
    # [0, 2] vs 2: mean 1, s = sqrt(2), se = 1, t = -1, df = 1 (Cauchy): p = 1/2 + atan(-1)/pi = 0.25.
    assert one_sided_ttest_below([0.0, 2.0], 2.0) == pytest.approx(0.25, rel=1e-12)
    # [0, 1, 2] vs 2: mean 1, s = 1, t = -sqrt(3), df = 2: p = 1/2 - sqrt(3) / (2 sqrt(5)).
    assert one_sided_ttest_below([0.0, 1.0, 2.0], 2.0) == pytest.approx(0.5 - math.sqrt(3) / (2 * math.sqrt(5)))
    assert one_sided_ttest_below([1.0, 3.0], 2.0) == pytest.approx(0.5)


def test_ttest_needs_two_values() -> None:
    with pytest.raises(ValueError, match="at least 2 values"):
        one_sided_ttest_below([3.27], 3.28)


def test_ttest_zero_variance() -> None:
    assert one_sided_ttest_below([3.27, 3.27, 3.27], 3.28) == 0.0
    assert one_sided_ttest_below([3.28, 3.28], 3.28) == 1.0
    assert one_sided_ttest_below([3.30, 3.30], 3.28) == 1.0


# -------------------------------------------------------------------------------------------------- aggregate


def test_aggregate_counts_failed_items_as_zero() -> None:
    [agg] = aggregate([
        record("t1", 0, fsr=1.0), record("t1", 1, fsr=0.8),
        record("t2", 0, fsr=0.9), record("t2", 1, "crashed"),
        record("t3", 0, "invalid"), record("t3", 1, "timeout"),
    ])
    assert (agg.items, agg.passed) == (6, 3)
    assert [t.mean_fsr for t in agg.tasks] == pytest.approx([0.9, 0.45, 0.0])
    assert [t.std_fsr for t in agg.tasks] == pytest.approx([math.sqrt(0.02), 0.9 / math.sqrt(2), 0.0])
    assert agg.score == pytest.approx((0.9 + 0.45 + 0.0) / 3)
    # per-seed scores (1.0 + 0.9 + 0) / 3 and (0.8 + 0 + 0) / 3; their sample std is |difference| / sqrt(2)
    assert agg.score_std == pytest.approx((1.9 / 3 - 0.8 / 3) / math.sqrt(2))
    # sorted [0, 0, 0, 0.8, 0.9, 1.0], one trimmed per end
    assert agg.iqm == pytest.approx((0 + 0 + 0.8 + 0.9) / 4)
    assert agg.iqm_ci[0] <= agg.iqm <= agg.iqm_ci[1]
    assert agg.tasks[1].statuses == (("crashed", 1), ("passed", 1))


def test_aggregate_groups_by_agent_model_scaffold_hints() -> None:
    recs = [
        record("t1", 0, fsr=0.5),
        record("t1", 0, fsr=0.2, hints="1+2"),
        record("t1", 0, fsr=0.3, hints="1"),
        record("t1", 0, fsr=0.4, model="o3-mini", scaffold="aide"),
        record("t1", 0, fsr=0.1, model="", scaffold=None),  # empty and absent are the same configuration
    ]
    aggs = aggregate(recs)
    assert [a.key for a in aggs] == [
        ("oracle", "", "", "0"), ("oracle", "", "", "1"), ("oracle", "", "", "1+2"),
        ("oracle", "o3-mini", "aide", "0"),
    ]
    assert aggs[0].items == 1 and aggs[0].score == pytest.approx(0.1)


def test_aggregate_keeps_the_last_record_of_a_rerun_item() -> None:
    [agg] = aggregate([record("t1", 0, "crashed"), record("t1", 1, fsr=0.4), record("t1", 0, fsr=0.6)])
    assert agg.items == 2 and agg.tasks[0].fsr == pytest.approx((0.6, 0.4))


def test_aggregate_to_json_is_plain_data() -> None:
    [agg] = aggregate([record("t1", 0, fsr=0.5), record("t1", 1, fsr=0.7)])
    data = agg.to_json()
    assert data["score"] == pytest.approx(0.6) and isinstance(data["iqm_ci"], list)
    assert data["tasks"][0]["task"] == "t1" and data["model"] == ""


# ------------------------------------------------------------------------------------------------------- paper


def test_paper_comparison_matches_model_scaffold_and_hints() -> None:
    aggs = aggregate([
        record("t1", 0, fsr=0.3, model="o3-mini", scaffold="aide", hints="1+2"),
        record("t1", 0, fsr=0.3, model="o3-mini", scaffold="multi-aide", hints="1+2+3"),
        record("t1", 0, fsr=0.3, model="o3-mini", scaffold="aide", hints="0"),             # paper has no h0
        record("t1", 0, fsr=0.3, model="o3-mini-high", scaffold="aide", hints="1"),        # model must be exact
        record("t1", 0, fsr=0.3, model="claude-3.7-sonnet", scaffold="flat", hints="3"),
    ])
    rows = paper_comparison(aggs)
    assert [(r.model, r.scaffold, r.hints, r.paper_mean, r.paper_std) for r in rows] == [
        ("claude-3.7-sonnet", "flat", "3", 0.06, 0.02),
        ("o3-mini", "aide", "1+2", 0.34, 0.03),
        ("o3-mini", "multi-aide", "1+2+3", 0.46, 0.04),
    ]
    assert rows[0].ours_mean == pytest.approx(0.3) and rows[0].ours_std == 0.0


@pytest.mark.parametrize(("ours", "paper"), [
    ("deepseek-reasoner", "deepseek-r1"), ("deepseek-ai/DeepSeek-R1", "deepseek-r1"),
    ("claude-3-7-sonnet-20250219", "claude-3.7-sonnet"), ("anthropic/claude-3.7-sonnet", "claude-3.7-sonnet"),
    ("o3-mini-2025-01-31", "o3-mini"), ("gemini-2.5-pro-preview-03-25", "gemini-2.5-pro"),
    ("o3-mini-high", "o3-mini-high"), ("deepseek-r1-0528", "deepseek-r1-0528"),
    ("claude-sonnet-4-5", "claude-sonnet-4-5"),
])
def test_api_model_ids_map_to_the_papers_names(ours: str, paper: str) -> None:
    assert paper_model_name(ours) == paper


def test_an_api_alias_is_compared_with_the_papers_cell() -> None:
    (row,) = paper_comparison(aggregate([record("t1", 0, fsr=0.2, model="deepseek-reasoner", scaffold="aide",
                                                hints="1+2")]))
    assert (row.model, row.paper_model, row.paper_mean) == ("deepseek-reasoner", "deepseek-r1", 0.28)


def test_shipped_paper_table_has_every_cell() -> None:
    table = load_paper_table(DEFAULT_PAPER_TABLE)
    assert len(table) == 4 * 5 * 5
    assert table[("gemini-2.5-pro", "forest", "1+2+3")] == (0.25, 0.04)


def test_paper_table_with_wrong_row_length_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "paper.toml"
    path.write_text('scaffolds = ["flat", "tree"]\n[m]\n"1" = [[0.1, 0.0]]\n', encoding="utf-8")
    with pytest.raises(PaperTableError, match=r"paper.toml: \[m\] '1' must hold one \[mean, std\] pair per scaffold"):
        load_paper_table(path)


def test_paper_comparison_reads_a_given_table(tmp_path: Path) -> None:
    path = tmp_path / "paper.toml"
    path.write_text('scaffolds = ["flat", "tree"]\n[my-model]\n"1" = [[0.1, 0.01], [0.2, 0.02]]\n', encoding="utf-8")
    aggs = aggregate([record("t1", 0, fsr=0.5, model="my-model", scaffold="tree", hints="1")])
    [row] = paper_comparison(aggs, path)
    assert (row.paper_mean, row.paper_std, row.ours_mean) == (0.2, 0.02, 0.5)


def test_aggregate_intervals_carry_each_items_own_fsr_uncertainty() -> None:
    def rec(task: str, fsr: float, half: float) -> dict:
        return {"task": task, "agent": "a", "hints": "0", "seed": 0, "status": "passed", "fsr": fsr,
                "fsr_low": fsr - half, "fsr_high": fsr + half}
    exact = aggregate([rec("t1", 1.0, 0.0), rec("t2", 0.8, 0.0)])[0]
    noisy = aggregate([rec("t1", 1.0, 0.2), rec("t2", 0.8, 0.2)])[0]
    assert exact.score_ci == (0.9, 0.9) and exact.tasks[0].fsr_ci == (1.0, 1.0)
    # two independent items with ±0.2 each: the mean is ±0.2/sqrt(2)
    assert noisy.score_ci == pytest.approx((0.9 - 0.2 / 2 ** 0.5, 0.9 + 0.2 / 2 ** 0.5), abs=1e-6)
    assert noisy.tasks[0].fsr_ci == pytest.approx((0.8, 1.2), abs=1e-6)
    assert noisy.iqm_ci[1] - noisy.iqm_ci[0] > exact.iqm_ci[1] - exact.iqm_ci[0]
    failed = aggregate([{**rec("t1", 1.0, 0.2), "status": "crashed"}])[0]
    assert failed.score_ci == (0.0, 0.0)  # a failed item's 0 is exact
