"""Statistics over result records: mean/std, IQM, bootstrap CIs, the speedrun t-test, per-configuration aggregates.

Pure functions on plain values and result-record dicts (the lines of `results.jsonl`), stdlib only, so they run
in a notebook or another harness without numpy or scipy.
"""

from __future__ import annotations

import math
import random
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pytest_speedrun.errors import SpeedrunError
from pytest_speedrun.files import PACKAGE_DIR, tomllib
from pytest_speedrun.judging.status import PASSED

DEFAULT_PAPER_TABLE = PACKAGE_DIR / "reference" / "paper_results.toml"


class PaperTableError(SpeedrunError, ValueError):
    """The paper's results table is not in the expected format."""


# --------------------------------------------------------------------------------------------- basic statistics


def _floats(values: Iterable[float], what: str) -> list[float]:
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError(f"{what}: no values")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError(f"{what}: values must be finite, got {xs}")
    return xs


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1 in the denominator; 0 for a single value)."""
    xs = _floats(values, "mean_std")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def iqm(values: Iterable[float], *, fractional: bool = False) -> float:
    """Interquartile mean: the mean of the middle half of the sorted values.

    Default (`fractional=False`): the 25%-trimmed mean exactly as `scipy.stats.trim_mean(x, 0.25)` computes it,
    which is what Agarwal et al. 2021 use (their `rliable` library calls that function): drop
    `floor(n / 4)` values at each end and average the rest. When n is not a multiple of 4 slightly more than
    half of the values are kept (n=6 keeps 4, n=3 keeps all 3).

    `fractional=True`: the exact middle 50% of the empirical distribution, where the two boundary values count
    with the fraction of them that lies inside the [25%, 75%] quantile range. For n divisible by 4 both agree.
    """
    xs = sorted(_floats(values, "iqm"))
    n = len(xs)
    if not fractional:
        cut = n // 4
        return statistics.fmean(xs[cut:n - cut])
    # Each value occupies a unit-width slot [i, i+1) on [0, n); keep the slots' overlap with [n/4, 3n/4).
    lo, hi = n / 4, 3 * n / 4
    total = 0.0
    for i, x in enumerate(xs):
        weight = max(0.0, min(i + 1, hi) - max(i, lo))
        total += weight * x
    return total / (hi - lo)


def _quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default, Hyndman & Fan type 7)."""
    pos = q * (len(sorted_xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (pos - lo) * (sorted_xs[hi] - sorted_xs[lo])


def bootstrap_ci(values: Iterable[float], statistic: Callable[[list[float]], float] = iqm, level: float = 0.95,
                 resamples: int = 2000, seed: int = 0, sds: Sequence[float] | None = None) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `statistic`; the same seed always gives the same interval.

    Draws `resamples` samples of size n with replacement from `random.Random(seed)`, computes the statistic on
    each, and returns the (1 - level)/2 and (1 + level)/2 quantiles of those (linear interpolation). With `sds`
    (each value's own standard error, e.g. an item's FSR noise), every drawn value is also perturbed by a normal
    draw of its sd, so the interval carries the per-item uncertainty as well as the spread between items.
    """
    xs = _floats(values, "bootstrap_ci")
    if sds is not None and any(sd > 0 for sd in sds):
        return _noisy_bootstrap(xs, list(sds), statistic, level, resamples, seed)
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_ci: level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"bootstrap_ci: resamples must be >= 1, got {resamples}")
    rng = random.Random(seed)
    stats = sorted(statistic(rng.choices(xs, k=len(xs))) for _ in range(resamples))
    alpha = (1.0 - level) / 2
    return _quantile(stats, alpha), _quantile(stats, 1.0 - alpha)


def _noisy_bootstrap(xs: list[float], sds: list[float], statistic: Callable[[list[float]], float], level: float,
                     resamples: int, seed: int) -> tuple[float, float]:
    if len(sds) != len(xs):
        raise ValueError(f"bootstrap_ci: {len(sds)} sds for {len(xs)} values")
    rng = random.Random(seed)
    n = len(xs)
    draws = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        draws.append(statistic([xs[i] + (rng.gauss(0.0, sds[i]) if sds[i] > 0 else 0.0) for i in idx]))
    draws.sort()
    alpha = (1.0 - level) / 2
    return _quantile(draws, alpha), _quantile(draws, 1.0 - alpha)


def fsr_sd(record: Mapping[str, Any]) -> float:
    """The standard error of an item's FSR from its 95% interval (0 without one, or when it did not pass: a
    failed item's 0 is exact)."""
    low, high = record.get("fsr_low"), record.get("fsr_high")
    if record.get("status") != PASSED or low in (None, "") or high in (None, ""):
        return 0.0
    return (float(high) - float(low)) / (2 * 1.959964)


def mean_ci(values: Sequence[float], sds: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean of independent values each with its own standard error (normal approximation)."""
    mean = statistics.fmean(values)
    half = statistics.NormalDist().inv_cdf((1 + level) / 2) * math.sqrt(sum(sd * sd for sd in sds)) / len(values)
    return mean - half, mean + half


# ------------------------------------------------------------------------------------------------------ t-test


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function, evaluated with the modified Lentz method.

    Returns K with I_x(a, b) = x^a (1-x)^b / (a B(a, b)) * K; converges fast for x < (a + 1) / (a + b + 2).
    """
    tiny, eps = 1e-300, 1e-15
    # K = 1 / (1 + d1 / (1 + d2 / (1 + ...))); Lentz evaluates the denominator g = 1 + d1 / (1 + ...).
    g, c, d = 1.0, 1.0, 0.0
    for j in range(1, 10_000):
        m = j // 2
        if j % 2:  # d_{2m+1}
            coef = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:  # d_{2m}
            coef = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + coef * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + coef / c
        c = c if abs(c) > tiny else tiny
        delta = c * d
        g *= delta
        if abs(delta - 1.0) < eps:
            return 1.0 / g
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"incomplete beta needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"incomplete beta needs 0 <= x <= 1, got x={x}")
    if x == 0.0 or x == 1.0:
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    # Use the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) on the side where the continued fraction converges.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t distribution with `df` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 0.0 if t < 0 else 1.0
    # P(|T| > |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2); half of it is the tail beyond |t|.
    tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return tail if t < 0 else 1.0 - tail


def one_sided_ttest_below(values: Iterable[float], threshold: float) -> float:
    """p-value of the one-sample t-test of H1: mean(values) < threshold (H0: mean >= threshold).

    The NanoGPT speedrun accepts a record when its repeated runs' mean val_loss is below 3.28 at p < 0.01.
    Zero variance gives p = 0.0 if the mean is below the threshold, else 1.0.
    """
    xs = _floats(values, "one_sided_ttest_below")
    n = len(xs)
    if n < 2:
        raise ValueError(f"one_sided_ttest_below needs at least 2 values to estimate the variance, got {n}")
    mean, std = statistics.fmean(xs), statistics.stdev(xs)
    if std == 0.0:
        return 0.0 if mean < threshold else 1.0
    t = (mean - threshold) / (std / math.sqrt(n))
    return student_t_cdf(t, n - 1)


# -------------------------------------------------------------------------------------------------- aggregates


def hints_key(hints: str) -> tuple[int, tuple[int, ...], str]:
    """Sort key for hint regimes: 0, 1, 2, 3, 1+2, 1+2+3 (the paper's order); unknown labels sort last."""
    try:
        levels = tuple(sorted(int(x) for x in str(hints).split("+")))
    except ValueError:
        return (99, (), str(hints))
    return (0 if levels == (0,) else len(levels), levels, str(hints))


def canonical_hints(hints: Any) -> str:
    """`2+1` -> `1+2`; anything that is not a regime label is returned as text."""
    key = hints_key(str(hints))
    return str(hints) if key[0] == 99 else "+".join(str(lv) for lv in key[1])


def record_fsr(record: Mapping[str, Any]) -> float:
    """The FSR an item contributes to the benchmark: its FSR if it passed, else 0."""
    if record.get("status") != PASSED or record.get("fsr") is None:
        return 0.0
    return float(record["fsr"])


@dataclass(frozen=True)
class TaskAggregate:
    """One task under one configuration: FSR over seeds."""

    task: str
    items: int
    passed: int
    mean_fsr: float
    std_fsr: float
    fsr: tuple[float, ...]  # per item, in seed order
    seeds: tuple[int, ...]
    statuses: tuple[tuple[str, int], ...]  # (status, count), sorted by status
    fsr_ci: tuple[float, float] = (0.0, 0.0)  # 95% interval of mean_fsr: the items' own noise and the seeds' spread

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ConfigAggregate:
    """Everything one configuration (agent, model, scaffold, hint regime) scored.

    `score` is the benchmark score: the mean over tasks of each task's mean FSR over seeds. `score_std` is the
    sample std over seeds of the per-seed score (the mean over tasks of that seed's FSR), as the paper reports
    mean ± std over runs; 0 with a single seed. `iqm` and `iqm_ci` pool all per-(task, seed) FSR values.
    """

    agent: str
    model: str
    scaffold: str
    hints: str
    items: int
    passed: int
    score: float
    score_std: float
    iqm: float
    iqm_ci: tuple[float, float]
    tasks: tuple[TaskAggregate, ...]
    score_ci: tuple[float, float] = (0.0, 0.0)  # 95%: the items' own FSR uncertainty (and the seeds' spread)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.agent, self.model, self.scaffold, self.hints)

    @property
    def label(self) -> str:
        """Short human name, e.g. `command:x · o3-mini · aide · h1+2`."""
        return " · ".join([p for p in (self.agent, self.model, self.scaffold) if p] + [f"h{self.hints}"])

    def to_json(self) -> dict:
        data = asdict(self)
        data["iqm_ci"] = list(self.iqm_ci)
        data["score_ci"] = list(self.score_ci)
        for task in data["tasks"]:
            task["fsr_ci"] = list(task["fsr_ci"])
        data["tasks"] = [t.to_json() for t in self.tasks]
        return data


def configuration(record: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """The configuration an aggregate groups by, (agent, model, scaffold, hints), of a record (not the resume
    key, pipeline.item.config_key); absent model or scaffold is ""."""
    return (str(record["agent"]), str(record.get("model") or ""), str(record.get("scaffold") or ""),
            canonical_hints(record["hints"]))


def latest_records(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One record per (configuration, task, seed): the last one seen, at the position of the first."""
    latest: dict[tuple, Mapping[str, Any]] = {}
    for rec in records:
        latest[(*configuration(rec), str(rec["task"]), int(rec["seed"]))] = rec
    return list(latest.values())


def _config_sort_key(key: tuple[str, str, str, str]) -> tuple:
    return (key[0], key[1], key[2], hints_key(key[3]))


def aggregate(records: Iterable[Mapping[str, Any]], *, resamples: int = 2000, seed: int = 0) -> list[ConfigAggregate]:
    """Group result records by configuration and score each; sorted by agent, model, scaffold, hint regime.

    Records whose status is not `passed` count as FSR 0. When the same (configuration, task, seed) appears more
    than once (a re-run appended to results.jsonl, or two stores holding the same item), the last one wins.
    """
    items: dict[tuple[str, str, str, str], dict[tuple[str, int], Mapping[str, Any]]] = {}
    for rec in latest_records(records):
        items.setdefault(configuration(rec), {})[(str(rec["task"]), int(rec["seed"]))] = rec
    out = []
    for key in sorted(items, key=_config_sort_key):
        by_item = items[key]
        tasks = []
        for task in sorted({t for t, _ in by_item}):
            recs = [by_item[k] for k in sorted(k for k in by_item if k[0] == task)]
            fsrs = [record_fsr(r) for r in recs]
            counts: dict[str, int] = {}
            for r in recs:
                counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
            mean, std = mean_std(fsrs)
            half = math.hypot(1.959964 * math.sqrt(sum(fsr_sd(r) ** 2 for r in recs)) / len(recs),
                              1.959964 * std / math.sqrt(len(recs)) if len(recs) > 1 else 0.0)
            tasks.append(TaskAggregate(
                task=task, items=len(recs), passed=counts.get(PASSED, 0), mean_fsr=mean, std_fsr=std,
                fsr_ci=(mean - half, mean + half),
                fsr=tuple(fsrs), seeds=tuple(int(r["seed"]) for r in recs), statuses=tuple(sorted(counts.items())),
            ))
        per_seed: dict[int, list[float]] = {}
        for (_, s), rec in by_item.items():
            per_seed.setdefault(s, []).append(record_fsr(rec))
        seed_scores = [statistics.fmean(per_seed[s]) for s in sorted(per_seed)]
        pooled = [f for t in tasks for f in t.fsr]
        sds = [fsr_sd(by_item[k]) for t in tasks for k in sorted(k for k in by_item if k[0] == t.task)]
        # The score is a mean over tasks of means over seeds: each item weighs 1 / (tasks * its task's seeds).
        weights = [1 / (len(tasks) * t.items) for t in tasks for _ in t.fsr]
        score = statistics.fmean(t.mean_fsr for t in tasks)
        item_half = 1.959964 * math.sqrt(sum((w * sd) ** 2 for w, sd in zip(weights, sds)))
        seed_half = 1.959964 * mean_std(seed_scores)[1] / math.sqrt(len(seed_scores)) if len(seed_scores) > 1 else 0
        half = math.hypot(item_half, seed_half)
        out.append(ConfigAggregate(
            agent=key[0], model=key[1], scaffold=key[2], hints=key[3],
            items=len(pooled), passed=sum(t.passed for t in tasks),
            score=score, score_std=mean_std(seed_scores)[1],
            iqm=iqm(pooled), iqm_ci=bootstrap_ci(pooled, iqm, resamples=resamples, seed=seed, sds=sds),
            tasks=tuple(tasks), score_ci=(score - half, score + half),
        ))
    return out


# -------------------------------------------------------------------------------------------- paper comparison


# The paper's model names, from the ids APIs and hubs use for the same models (provider prefix and case
# ignored). Only dated snapshots and aliases of the same model: "o3-mini-high" or "deepseek-r1-0528" are other
# configurations and get no paper cell.
PAPER_MODEL_ALIASES = (
    (re.compile(r"o3-mini(-\d{4}-\d{2}-\d{2})?"), "o3-mini"),
    (re.compile(r"deepseek-reasoner|deepseek-r1"), "deepseek-r1"),
    (re.compile(r"claude-3[.-]7-sonnet(-\d{8}|-latest)?"), "claude-3.7-sonnet"),
    (re.compile(r"gemini-2\.5-pro(-(preview|exp)-[\d-]+)?"), "gemini-2.5-pro"),
)


def paper_model_name(model: str) -> str:
    """The paper's name for `model` (e.g. deepseek-reasoner -> deepseek-r1), or `model` itself."""
    bare = model.strip().lower().rsplit("/", 1)[-1]
    for pattern, name in PAPER_MODEL_ALIASES:
        if pattern.fullmatch(bare):
            return name
    return model


@dataclass(frozen=True)
class PaperRow:
    """One configuration of ours next to the same (model, scaffold, hints) cell of the paper's Table 3."""

    model: str
    scaffold: str
    hints: str
    ours_mean: float
    ours_std: float
    paper_mean: float
    paper_std: float
    paper_model: str = ""  # the paper's name for the model, when ours is an alias of it

    def to_json(self) -> dict:
        return asdict(self)


def load_paper_table(path: Path | str = DEFAULT_PAPER_TABLE) -> dict[tuple[str, str, str], tuple[float, float]]:
    """{(model, scaffold, hints): (mean, std)} from a TOML file in the format of `reference/paper_results.toml`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PaperTableError(f"{path}: cannot read the paper table: {exc}") from exc
    scaffolds = data.get("scaffolds")
    if not isinstance(scaffolds, list) or not all(isinstance(s, str) for s in scaffolds):
        raise PaperTableError(f"{path}: needs a top-level `scaffolds` list of names")
    table = {}
    for model, regimes in data.items():
        if model == "scaffolds":
            continue
        if not isinstance(regimes, dict):
            raise PaperTableError(f"{path}: [{model}] must be a table of hint regime = [[mean, std], ...]")
        for hints, cells in regimes.items():
            ok = isinstance(cells, list) and len(cells) == len(scaffolds) and all(
                isinstance(c, list) and len(c) == 2 and all(isinstance(v, (int, float)) for v in c) for c in cells)
            if not ok:
                raise PaperTableError(f"{path}: [{model}] {hints!r} must hold one [mean, std] pair per scaffold "
                                      f"({len(scaffolds)}: {', '.join(scaffolds)})")
            for scaffold, (mean, std) in zip(scaffolds, cells):
                table[(model, scaffold.lower(), canonical_hints(hints))] = (float(mean), float(std))
    return table


def paper_comparison(aggregates: Iterable[ConfigAggregate],
                     paper_toml_path: Path | str = DEFAULT_PAPER_TABLE) -> list[PaperRow]:
    """Our score next to the paper's for every configuration the paper also ran (same model, up to the API
    aliases in PAPER_MODEL_ALIASES; same scaffold and hints)."""
    table = load_paper_table(paper_toml_path)
    rows = []
    for agg in aggregates:
        paper_model = paper_model_name(agg.model)
        cell = table.get((paper_model, agg.scaffold.lower(), agg.hints))
        if cell is not None:
            rows.append(PaperRow(model=agg.model, scaffold=agg.scaffold, hints=agg.hints,
                                 ours_mean=agg.score, ours_std=agg.score_std, paper_mean=cell[0], paper_std=cell[1],
                                 paper_model=paper_model))
    return rows
