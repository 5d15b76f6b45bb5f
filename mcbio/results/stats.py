"""Aggregates over seeds and tasks: mean/std, paired t-test with CI and power, Min-Max, Win Probability.

Scores are organised as ``{model: {task: value}}`` (one value per task, usually the mean
over fine-tuning seeds). Every function raises ``ValueError`` naming the model or task
when the inputs cannot be compared.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

from scipy import stats as scipy_stats

Scores = Mapping[str, Mapping[str, float]]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n-1); the std of a single value is 0."""
    if not values:
        raise ValueError("mean_std: no values")
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass(frozen=True)
class PairedComparison:
    """``a - b`` over tasks: the caption line of the CLM-vs-MLM table."""

    n_tasks: int
    mean_diff: float
    std_diff: float
    t_statistic: float
    p_value: float
    ci_low: float
    ci_high: float
    confidence: float
    wins: int  # tasks where a > b


def common_tasks(scores: Scores, models: Sequence[str]) -> list[str]:
    for m in models:
        if m not in scores:
            raise ValueError(f"model '{m}' has no scores (have: {', '.join(sorted(scores)) or 'none'})")
    tasks = set(scores[models[0]])
    for m in models[1:]:
        tasks &= set(scores[m])
    return sorted(tasks)


def paired_ttest(a: Mapping[str, float], b: Mapping[str, float], confidence: float = 0.95) -> PairedComparison:
    """Two-sided paired t-test of ``a`` vs ``b`` over their common tasks, and the CI of the mean gain.

    With per-task differences ``d_t = a_t - b_t`` over ``n`` tasks, ``t = mean(d) / (sd(d)/sqrt(n))``
    with ``n - 1`` degrees of freedom (scipy's ``ttest_rel``), and the interval is
    ``mean(d) +- t_{(1+confidence)/2, n-1} * sd(d) / sqrt(n)``.
    """
    tasks = sorted(set(a) & set(b))
    if len(tasks) < 2:
        raise ValueError(f"paired_ttest: need at least 2 common tasks, got {len(tasks)} ({', '.join(tasks)})")
    xa = [a[t] for t in tasks]
    xb = [b[t] for t in tasks]
    diffs = [x - y for x, y in zip(xa, xb)]
    n = len(diffs)
    mean_d, sd_d = mean_std(diffs)
    result = scipy_stats.ttest_rel(xa, xb)
    half = ci_half_width(sd_d, n, confidence)
    return PairedComparison(
        n_tasks=n, mean_diff=mean_d, std_diff=sd_d, t_statistic=float(result.statistic),
        p_value=float(result.pvalue), ci_low=mean_d - half, ci_high=mean_d + half,
        confidence=confidence, wins=sum(d > 0 for d in diffs),
    )


def ci_half_width(sd: float, n: int, confidence: float = 0.95) -> float:
    """Half-width of the t confidence interval of a mean paired difference: ``t_{(1+c)/2, n-1} * sd / sqrt(n)``."""
    if n < 2:
        raise ValueError(f"ci_half_width: need at least 2 paired differences, got {n}")
    return float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)


def paired_ttest_power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` when the true mean difference is ``effect``.

    The statistic follows a noncentral t with ``n - 1`` degrees of freedom and noncentrality
    ``effect * sqrt(n) / sd``; the test rejects beyond ``+-t_{1-alpha/2, n-1}``.
    """
    if n < 2:
        raise ValueError(f"paired_ttest_power: need at least 2 paired differences, got {n}")
    if sd <= 0:
        raise ValueError(f"paired_ttest_power: the sd of the differences must be positive, got {sd}")
    df = n - 1
    crit = scipy_stats.t.ppf(1 - alpha / 2, df)
    nc = effect * math.sqrt(n) / sd
    # The lower tail as the upper tail at -nc: scipy's nct.cdf far in the tail can return nan.
    return float(scipy_stats.nct.sf(crit, df, nc) + scipy_stats.nct.sf(crit, df, -nc))


def minimal_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.80) -> float:
    """The smallest true mean paired difference the two-sided paired t-test at level ``alpha`` detects
    with probability ``power``, for ``n`` pairs whose differences have standard deviation ``sd``.

    Solves :func:`paired_ttest_power` (noncentral t, exact for normal differences) for the effect;
    for large ``n`` it tends to ``(z_{1-alpha/2} + z_{power}) * sd / sqrt(n)``. In the unit of ``sd``.
    """
    from scipy.optimize import brentq

    if not 0 < alpha < 1:
        raise ValueError(f"minimal_detectable_effect: alpha must be in (0, 1), got {alpha}")
    if not alpha < power < 1:
        # At effect 0 the test already rejects with probability alpha.
        raise ValueError(f"minimal_detectable_effect: power must be in (alpha={alpha}, 1), got {power}")
    if n < 2:
        raise ValueError(f"minimal_detectable_effect: need at least 2 paired differences, got {n}")
    if sd == 0:
        return 0.0
    if sd < 0:
        raise ValueError(f"minimal_detectable_effect: the sd of the differences must be >= 0, got {sd}")
    # The normal approximation underestimates at small n: widen the bracket until it holds the root.
    high = (scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(power)) * sd / math.sqrt(n)
    while paired_ttest_power(high, sd, n, alpha) < power:
        high *= 2
    return float(brentq(lambda d: paired_ttest_power(d, sd, n, alpha) - power, 0.0, high, xtol=1e-12 * sd))


def min_max_normalised(scores: Scores) -> dict[str, dict[str, float]]:
    """Per-task Min-Max normalisation across the compared models (DoctoBERT's aggregate).

    For task ``t`` with best score ``max_t`` and worst ``min_t`` among the models,
    ``norm(m, t) = (s(m, t) - min_t) / (max_t - min_t)``: 1 for the best model, 0 for the
    worst. When every model ties on a task, all get 1. Only tasks every model has count.
    """
    models = sorted(scores)
    tasks = common_tasks(scores, models)
    out: dict[str, dict[str, float]] = {m: {} for m in models}
    for t in tasks:
        vals = [scores[m][t] for m in models]
        lo, hi = min(vals), max(vals)
        for m in models:
            out[m][t] = 1.0 if hi == lo else (scores[m][t] - lo) / (hi - lo)
    return out


def min_max_score(scores: Scores) -> dict[str, float]:
    """Mean over tasks of :func:`min_max_normalised` (in [0, 1])."""
    norm = min_max_normalised(scores)
    return {m: statistics.fmean(v.values()) if v else math.nan for m, v in norm.items()}


def win_probability(scores: Scores) -> dict[str, float]:
    """Probability that a model beats another model drawn at random on a task drawn at random.

    ``WP(m) = 1 / (|T| (|M| - 1)) * sum_t sum_{o != m} w(m, o, t)`` with ``w = 1`` if
    ``s(m, t) > s(o, t)``, ``1/2`` on a tie and ``0`` otherwise, over the tasks ``T`` that
    every model has. The values over all models sum to ``|M| / 2``.
    """
    models = sorted(scores)
    if len(models) < 2:
        raise ValueError("win_probability: need at least 2 models")
    tasks = common_tasks(scores, models)
    if not tasks:
        raise ValueError("win_probability: the models share no task")
    out = {}
    for m in models:
        total = 0.0
        for t in tasks:
            for o in models:
                if o == m:
                    continue
                diff = scores[m][t] - scores[o][t]
                total += 1.0 if diff > 0 else 0.5 if diff == 0 else 0.0
        out[m] = total / (len(tasks) * (len(models) - 1))
    return out
