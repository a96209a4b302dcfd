"""Built-in statistical verifiers and multiple-comparison correction.

Every verifier here is a :func:`crystallize.hypothesis.verifier` factory:
``welch_t_test(alpha=0.01)`` returns a picklable callable that compares one
metric between baseline and treatment and returns a dict of plain Python
values (JSON-ready)::

    test, metric, p_value, statistic, effect_size, effect_size_name,
    ci_low, ci_high, ci_level, mean_difference, n_baseline, n_treatment,
    significant, alternative, alpha  (+ df, method, n_resamples, seed where relevant)

Differences are always *treatment minus baseline*; ``alternative="greater"``
means the treatment is larger. ``ci_low``/``ci_high`` bound the difference of
means (the mean paired difference for paired tests) at ``level``; the interval
is two-sided whatever the alternative.

Degenerate samples follow one rule for every verifier:

* no difference at all (all values equal on both sides; for paired tests all
  differences zero): ``p_value=1.0``, ``statistic`` at its null value,
  ``effect_size=0.0``, ``ci_low=ci_high=0.0``, ``significant=False``;
* both samples constant but different (paired: all differences equal and
  non-zero): Hedges' g and the t statistic would be infinite, so the t-tests,
  the permutation test and the bootstrap raise :class:`StatisticsError`;
  the rank tests (Mann-Whitney, Wilcoxon) have finite answers and return them.

Fewer than two values on a side, NaN or infinite values, non-numeric values
and unequal lengths for paired tests raise :class:`StatisticsError` naming
the metric. See ``docs/statistics.md`` for guidance on choosing a test.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as st

from crystallize.errors import DefinitionError, MissingMetricError, StatisticsError
from crystallize.verifiers import verifier

__all__ = [
    "ALTERNATIVES",
    "BUILTIN_VERIFIERS",
    "CORRECTIONS",
    "adjust_p_values",
    "bootstrap_ci",
    "mann_whitney_u",
    "paired_t_test",
    "permutation_test",
    "student_t_test",
    "welch_t_test",
    "wilcoxon_signed_rank",
]

#: Accepted ``alternative=`` values; "greater" means treatment > baseline.
ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")
#: Accepted ``method=`` values of :func:`adjust_p_values`.
CORRECTIONS: tuple[str, ...] = ("holm", "bonferroni", "fdr_bh")

_EXACT_MANN_WHITNEY_MAX_N = 20
_EXACT_WILCOXON_MAX_N = 25
_BOOTSTRAP_BATCH_CELLS = 2_000_000

Samples = Mapping[str, Sequence[float]]


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class _Options:
    alpha: float
    alternative: str
    level: float


@dataclass(frozen=True, slots=True)
class _Data:
    metric: str
    baseline: np.ndarray  # (n_baseline,) float64
    treatment: np.ndarray  # (n_treatment,) float64


def _options(alpha: Any, alternative: Any, level: Any) -> _Options:
    if alternative not in ALTERNATIVES:
        raise DefinitionError(
            f"alternative must be one of 'two-sided', 'greater', 'less'; got {alternative!r}"
        )
    for name, value in (("alpha", alpha), ("level", level)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
            raise DefinitionError(f"{name} must be a number strictly between 0 and 1; got {value!r}")
    return _Options(float(alpha), str(alternative), float(level))


def _check_resampling(n_resamples: Any, seed: Any) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) or n_resamples < 1:
        raise DefinitionError(f"n_resamples must be a positive integer; got {n_resamples!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise DefinitionError(f"seed must be a non-negative integer or None; got {seed!r}")


def _select_metric(baseline: Samples, treatment: Samples, metric: str | None) -> str:
    if metric is None:
        names = list(dict.fromkeys([*baseline, *treatment]))
        if len(names) != 1:
            found = ", ".join(repr(name) for name in names) or "none"
            raise StatisticsError(
                f"expected exactly one metric, got {found}; pass metric=... to choose one"
            )
        metric = names[0]
    if metric not in baseline or metric not in treatment:
        raise MissingMetricError(metric)
    return metric


def _as_array(values: Any, metric: str, side: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatisticsError(f"metric {metric!r}: {side} values are not numbers ({exc})") from exc
    if array.ndim != 1:
        raise StatisticsError(
            f"metric {metric!r}: {side} values must be a flat sequence of numbers, got shape {array.shape}"
        )
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise StatisticsError(
            f"metric {metric!r}: {side} values contain NaN or infinite values ({bad} of {array.size})"
        )
    if array.size < 2:
        raise StatisticsError(f"metric {metric!r}: need at least 2 {side} values, got {array.size}")
    return array


def _unpaired(baseline: Samples, treatment: Samples, metric: str | None) -> _Data:
    name = _select_metric(baseline, treatment, metric)
    return _Data(name, _as_array(baseline[name], name, "baseline"), _as_array(treatment[name], name, "treatment"))


def _paired(baseline: Samples, treatment: Samples, metric: str | None) -> _Data:
    data = _unpaired(baseline, treatment, metric)
    if data.baseline.size != data.treatment.size:
        raise StatisticsError(
            f"metric {data.metric!r}: paired tests need equal lengths, got baseline n="
            f"{data.baseline.size} and treatment n={data.treatment.size}; evaluate the hypothesis "
            "with per-replicate metrics to pair values by replicate"
        )
    return data


# --------------------------------------------------------------------------- pieces


def _is_constant(values: np.ndarray) -> bool:
    return bool(np.ptp(values) == 0.0)


def _hedges_correction(df: float) -> float:
    """Small-sample factor J(df) = Γ(df/2) / (√(df/2) Γ((df-1)/2)) of Hedges (1981)."""
    return math.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / math.sqrt(df / 2)


def _pooled_sd(data: _Data) -> float:
    nb, nt = data.baseline.size, data.treatment.size
    ss = (nb - 1) * data.baseline.var(ddof=1) + (nt - 1) * data.treatment.var(ddof=1)
    return math.sqrt(ss / (nb + nt - 2))


def _standardised(data: _Data, diff: float, sd: float, df: float) -> float:
    if not sd > 0.0:  # the values differ, but too little for float64 to measure
        raise StatisticsError(
            f"metric {data.metric!r}: the standard deviation is {sd!r} although the values "
            "differ; they are too close together to standardise (Hedges' g)"
        )
    return _hedges_correction(df) * diff / sd


def _hedges_g(data: _Data) -> float:
    """Hedges' g: (mean_t - mean_b) / pooled SD, times J(n_b + n_t - 2)."""
    diff = float(data.treatment.mean() - data.baseline.mean())
    return _standardised(data, diff, _pooled_sd(data), data.baseline.size + data.treatment.size - 2)


def _hedges_g_paired(data: _Data, diffs: np.ndarray) -> float:
    """Hedges' g of paired differences: mean(d) / sd(d), times J(n - 1)."""
    return _standardised(data, float(diffs.mean()), float(diffs.std(ddof=1)), diffs.size - 1)


@contextlib.contextmanager
def _constant_sample_ok() -> Iterator[None]:
    """Silence scipy's "Precision loss" warning, a false alarm when one sample is constant.

    Truly degenerate inputs (both samples constant) never reach scipy.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        yield


def _t_interval(centre: float, se: float, df: float, level: float) -> tuple[float, float]:
    if se == 0.0:
        return centre, centre
    half = float(st.t.ppf((1 + level) / 2, df)) * se
    return centre - half, centre + half


def _welch_parts(data: _Data) -> tuple[float, float]:
    """Standard error and Welch-Satterthwaite degrees of freedom of the mean difference."""
    vb = data.baseline.var(ddof=1) / data.baseline.size
    vt = data.treatment.var(ddof=1) / data.treatment.size
    se = math.sqrt(vb + vt)
    if se == 0.0:
        return 0.0, float(data.baseline.size + data.treatment.size - 2)
    df = (vb + vt) ** 2 / (vb**2 / (data.baseline.size - 1) + vt**2 / (data.treatment.size - 1))
    return se, float(df)


def _welch_interval(data: _Data, level: float) -> tuple[float, float]:
    se, df = _welch_parts(data)
    return _t_interval(float(data.treatment.mean() - data.baseline.mean()), se, df, level)


def _result(data: _Data, opts: _Options, *, test: str, p_value: Any, statistic: Any,
            effect: Any, effect_name: str, ci: tuple[Any, Any], mean_difference: Any,
            **extra: Any) -> dict[str, Any]:
    floats = {"p_value": p_value, "statistic": statistic, "effect_size": effect,
                "ci_low": ci[0], "ci_high": ci[1], "mean_difference": mean_difference}
    floats = {key: float(value) for key, value in floats.items()}
    for key, value in floats.items():
        if not math.isfinite(value):
            raise StatisticsError(
                f"{test} on metric {data.metric!r} gave a non-finite {key} ({value}); "
                "the values may be too large or too close together"
            )
    p = min(max(floats.pop("p_value"), 0.0), 1.0)
    return {
        "test": test, "metric": data.metric, "p_value": p, **floats,
        "effect_size_name": effect_name, "ci_level": opts.level,
        "n_baseline": int(data.baseline.size), "n_treatment": int(data.treatment.size),
        "significant": bool(p < opts.alpha), "alternative": opts.alternative, "alpha": opts.alpha,
        **extra,
    }


def _no_difference(data: _Data, opts: _Options, test: str, effect_name: str,
                   statistic: float = 0.0, **extra: Any) -> dict[str, Any]:
    """Result for samples that show no difference at all (see module docstring)."""
    return _result(data, opts, test=test, p_value=1.0, statistic=statistic, effect=0.0,
                   effect_name=effect_name, ci=(0.0, 0.0), mean_difference=0.0, **extra)


def _undefined_effect(data: _Data, test: str, what: str) -> StatisticsError:
    return StatisticsError(
        f"{test} on metric {data.metric!r}: {what}, so the standardised effect "
        "(Hedges' g, and the t statistic) would be infinite; use mann_whitney_u or "
        "wilcoxon_signed_rank, or check that the metric varies between replicates"
    )


def _constant_unpaired(data: _Data, opts: _Options, test: str, **extra: Any) -> dict[str, Any] | None:
    """No-difference result, an error, or None when the samples are not both constant."""
    if not (_is_constant(data.baseline) and _is_constant(data.treatment)):
        return None
    if data.baseline[0] == data.treatment[0]:
        return _no_difference(data, opts, test, "hedges_g", **extra)
    raise _undefined_effect(
        data, test, f"both samples are constant but differ (baseline {float(data.baseline[0])!r}, "
        f"treatment {float(data.treatment[0])!r})"
    )


# --------------------------------------------------------------------------- t-tests


@verifier
def welch_t_test(baseline: Samples, treatment: Samples, *, alpha: float = 0.05,
                 alternative: str = "two-sided", level: float = 0.95,
                 metric: str | None = None) -> dict[str, Any]:
    """Welch's unequal-variance t-test of mean(treatment) - mean(baseline).

    Parameters
    ----------
    baseline, treatment : Mapping[str, Sequence[float]]
        Metric name -> values (one value per replicate or per record).
    alpha : float, optional
        Significance level; ``significant = p_value < alpha``.
    alternative : {"two-sided", "greater", "less"}, optional
        "greater" tests treatment > baseline.
    level : float, optional
        Confidence level of the (two-sided) interval of the mean difference.
    metric : str, optional
        Metric to test; may be omitted when the mapping holds exactly one.

    Returns
    -------
    dict
        The common keys (module docstring) plus ``df``, the Welch-Satterthwaite
        degrees of freedom. ``effect_size`` is Hedges' g with the pooled SD.

    Raises
    ------
    StatisticsError
        Fewer than 2 values, NaN/inf, several metrics without ``metric=``, or
        both samples constant but different.
    MissingMetricError
        ``metric`` is absent on a side.
    DefinitionError
        Bad ``alpha``, ``alternative`` or ``level``.

    References
    ----------
    .. [1] Welch, B. L. (1947). The generalization of "Student's" problem when
       several different population variances are involved. Biometrika 34, 28-35.
    .. [2] Hedges, L. V. (1981). Distribution theory for Glass's estimator of effect
       size and related estimators. J. Educational Statistics 6, 107-128.
    .. [3] ``scipy.stats.ttest_ind(..., equal_var=False)``.

    Examples
    --------
    >>> out = welch_t_test()({"auc": [0.70, 0.72, 0.71]}, {"auc": [0.75, 0.78, 0.76]})
    >>> out["effect_size_name"], out["significant"]
    ('hedges_g', True)
    """
    opts = _options(alpha, alternative, level)
    data = _unpaired(baseline, treatment, metric)
    se, df = _welch_parts(data)
    constant = _constant_unpaired(data, opts, "welch_t_test", df=df)
    if constant is not None:
        return constant
    with _constant_sample_ok():
        res = st.ttest_ind(data.treatment, data.baseline, equal_var=False, alternative=alternative)
    diff = float(data.treatment.mean() - data.baseline.mean())
    return _result(data, opts, test="welch_t_test", p_value=res.pvalue, statistic=res.statistic,
                   effect=_hedges_g(data), effect_name="hedges_g", mean_difference=diff,
                   ci=_t_interval(diff, se, df, level), df=df)


@verifier
def student_t_test(baseline: Samples, treatment: Samples, *, alpha: float = 0.05,
                   alternative: str = "two-sided", level: float = 0.95,
                   metric: str | None = None) -> dict[str, Any]:
    """Student's pooled-variance two-sample t-test of mean(treatment) - mean(baseline).

    Assumes equal variances; prefer :func:`welch_t_test` unless you know they are.

    Parameters
    ----------
    baseline, treatment : Mapping[str, Sequence[float]]
        Metric name -> values.
    alpha, alternative, level, metric
        As for :func:`welch_t_test`.

    Returns
    -------
    dict
        The common keys plus ``df = n_baseline + n_treatment - 2``; the interval
        uses the pooled standard error; ``effect_size`` is Hedges' g.

    Raises
    ------
    StatisticsError, MissingMetricError, DefinitionError
        As for :func:`welch_t_test`.

    References
    ----------
    .. [1] Student (1908). The probable error of a mean. Biometrika 6, 1-25.
    .. [2] Hedges, L. V. (1981), as for :func:`welch_t_test`.
    .. [3] ``scipy.stats.ttest_ind(..., equal_var=True)``.
    """
    opts = _options(alpha, alternative, level)
    data = _unpaired(baseline, treatment, metric)
    nb, nt = data.baseline.size, data.treatment.size
    df = float(nb + nt - 2)
    constant = _constant_unpaired(data, opts, "student_t_test", df=df)
    if constant is not None:
        return constant
    with _constant_sample_ok():
        res = st.ttest_ind(data.treatment, data.baseline, equal_var=True, alternative=alternative)
    diff = float(data.treatment.mean() - data.baseline.mean())
    se = _pooled_sd(data) * math.sqrt(1 / nb + 1 / nt)
    return _result(data, opts, test="student_t_test", p_value=res.pvalue, statistic=res.statistic,
                   effect=_hedges_g(data), effect_name="hedges_g", mean_difference=diff,
                   ci=_t_interval(diff, se, df, level), df=df)


@verifier(paired=True)
def paired_t_test(baseline: Samples, treatment: Samples, *, alpha: float = 0.05,
                  alternative: str = "two-sided", level: float = 0.95,
                  metric: str | None = None) -> dict[str, Any]:
    """Paired t-test on the differences ``d = treatment - baseline`` (paired by position).

    Inside a :class:`~crystallize.hypothesis.Hypothesis`, values are paired by
    replicate index when per-replicate metrics are available.

    Parameters
    ----------
    baseline, treatment : Mapping[str, Sequence[float]]
        Metric name -> values; both sides must have the same length.
    alpha, alternative, level, metric
        As for :func:`welch_t_test`.

    Returns
    -------
    dict
        The common keys plus ``df = n - 1``. The interval is that of mean(d);
        ``effect_size`` is Hedges' g of the differences, mean(d)/sd(d) x J(n-1).

    Raises
    ------
    StatisticsError
        Unequal lengths, fewer than 2 pairs, NaN/inf, or all differences equal
        and non-zero (zero variance).
    MissingMetricError, DefinitionError
        As for :func:`welch_t_test`.

    References
    ----------
    .. [1] Student (1908). The probable error of a mean. Biometrika 6, 1-25.
    .. [2] Hedges, L. V. (1981), as for :func:`welch_t_test`.
    .. [3] ``scipy.stats.ttest_rel``.
    """
    opts = _options(alpha, alternative, level)
    data = _paired(baseline, treatment, metric)
    diffs = data.treatment - data.baseline
    df = float(diffs.size - 1)
    if _is_constant(diffs):
        if diffs[0] == 0.0:
            return _no_difference(data, opts, "paired_t_test", "hedges_g", df=df)
        raise _undefined_effect(
            data, "paired_t_test", f"every paired difference equals {float(diffs[0])!r} (zero variance)"
        )
    with _constant_sample_ok():
        res = st.ttest_rel(data.treatment, data.baseline, alternative=alternative)
    mean = float(diffs.mean())
    se = float(diffs.std(ddof=1)) / math.sqrt(diffs.size)
    return _result(data, opts, test="paired_t_test", p_value=res.pvalue, statistic=res.statistic,
                   effect=_hedges_g_paired(data, diffs), effect_name="hedges_g", mean_difference=mean,
                   ci=_t_interval(mean, se, df, level), df=df)


# --------------------------------------------------------------------------- rank tests


@verifier
def mann_whitney_u(baseline: Samples, treatment: Samples, *, alpha: float = 0.05,
                   alternative: str = "two-sided", level: float = 0.95,
                   metric: str | None = None) -> dict[str, Any]:
    """Mann-Whitney U (Wilcoxon rank-sum) test with Cliff's delta.

    ``statistic`` is U of the treatment: the number of (treatment, baseline)
    pairs with treatment > baseline, ties counting one half. The p-value is
    exact when there are no ties and both n <= 20, otherwise normal with tie
    and continuity correction (``method`` says which).

    Parameters
    ----------
    baseline, treatment : Mapping[str, Sequence[float]]
        Metric name -> values.
    alpha, alternative, level, metric
        As for :func:`welch_t_test`.

    Returns
    -------
    dict
        The common keys plus ``method``. ``effect_size`` is Cliff's delta,
        P(t > b) - P(t < b) = 2U/(n_b n_t) - 1, in [-1, 1]. The interval is the
        Welch t-interval of the mean difference (degenerate when both samples
        are constant).

    Raises
    ------
    StatisticsError, MissingMetricError, DefinitionError
        As for :func:`welch_t_test`, except that constant samples are allowed.

    References
    ----------
    .. [1] Mann, H. B., Whitney, D. R. (1947). On a test of whether one of two random
       variables is stochastically larger than the other. Ann. Math. Stat. 18, 50-60.
    .. [2] Cliff, N. (1993). Dominance statistics: ordinal analyses to answer ordinal
       questions. Psychological Bulletin 114, 494-509.
    .. [3] ``scipy.stats.mannwhitneyu``.
    """
    opts = _options(alpha, alternative, level)
    data = _unpaired(baseline, treatment, metric)
    nb, nt = data.baseline.size, data.treatment.size
    pooled = np.concatenate([data.baseline, data.treatment])
    if _is_constant(pooled):
        return _no_difference(data, opts, "mann_whitney_u", "cliffs_delta", nb * nt / 2, method="none")
    ties = np.unique(pooled).size < pooled.size
    method = "exact" if not ties and max(nb, nt) <= _EXACT_MANN_WHITNEY_MAX_N else "asymptotic"
    res = st.mannwhitneyu(data.treatment, data.baseline, alternative=alternative, method=method)
    u = float(res.statistic)
    return _result(data, opts, test="mann_whitney_u", p_value=res.pvalue, statistic=u,
                   effect=2 * u / (nb * nt) - 1, effect_name="cliffs_delta",
                   mean_difference=float(data.treatment.mean() - data.baseline.mean()),
                   ci=_welch_interval(data, level), method=method)


@verifier(paired=True)
def wilcoxon_signed_rank(baseline: Samples, treatment: Samples, *, alpha: float = 0.05,
                         alternative: str = "two-sided", level: float = 0.95,
                         metric: str | None = None) -> dict[str, Any]:
    """Wilcoxon signed-rank test on ``d = treatment - baseline`` with the rank-biserial r.

    Zero differences are dropped (Wilcoxon's method). ``statistic`` is W+, the
    sum of the ranks of |d| over positive differences. The p-value is exact
    when no difference is zero or tied and n <= 25, otherwise normal with tie
    correction and no continuity correction (``method`` says which).

    Parameters
    ----------
    baseline, treatment : Mapping[str, Sequence[float]]
        Metric name -> values; both sides must have the same length.
    alpha, alternative, level, metric
        As for :func:`welch_t_test`.

    Returns
    -------
    dict
        The common keys plus ``method`` and ``n_nonzero``. ``effect_size`` is the
        matched-pairs rank-biserial correlation (W+ - W-)/(W+ + W-), in [-1, 1].
        The interval is the t-interval of mean(d) (degenerate when d is constant).

    Raises
    ------
    StatisticsError
        Unequal lengths, fewer than 2 pairs, NaN/inf.
    MissingMetricError, DefinitionError
        As for :func:`welch_t_test`.

    References
    ----------
    .. [1] Wilcoxon, F. (1945). Individual comparisons by ranking methods.
       Biometrics Bulletin 1, 80-83.
    .. [2] Kerby, D. S. (2014). The simple difference formula: an approach to teaching
       nonparametric correlation. Comprehensive Psychology 3, 11.IT.3.1.
    .. [3] ``scipy.stats.wilcoxon``.
    """
    opts = _options(alpha, alternative, level)
    data = _paired(baseline, treatment, metric)
    diffs = data.treatment - data.baseline
    nonzero = diffs[diffs != 0.0]
    if nonzero.size == 0:
        return _no_difference(data, opts, "wilcoxon_signed_rank", "rank_biserial",
                              method="none", n_nonzero=0)
    ranks = st.rankdata(np.abs(nonzero))
    w_plus, w_minus = float(ranks[nonzero > 0].sum()), float(ranks[nonzero < 0].sum())
    exact = (nonzero.size == diffs.size and np.unique(np.abs(nonzero)).size == nonzero.size
             and nonzero.size <= _EXACT_WILCOXON_MAX_N)
    method = "exact" if exact else "asymptotic"
    res = st.wilcoxon(nonzero, alternative=alternative, method=method, correction=False)
    se = float(diffs.std(ddof=1)) / math.sqrt(diffs.size)
    mean = float(diffs.mean())
    return _result(data, opts, test="wilcoxon_signed_rank", p_value=res.pvalue, statistic=w_plus,
                   effect=(w_plus - w_minus) / (w_plus + w_minus), effect_name="rank_biserial",
                   mean_difference=mean, ci=_t_interval(mean, se, diffs.size - 1, level),
                   method=method, n_nonzero=int(nonzero.size))


# --------------------------------------------------------------------------- resampling


def _mean_difference(treatment: np.ndarray, baseline: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(treatment, axis=axis) - np.mean(baseline, axis=axis)


def _scipy_permutation(data: _Data, alternative: str, n_resamples: int, seed: int | None) -> Any:
    rng = np.random.default_rng(seed)
    keyword = "rng" if "rng" in inspect.signature(st.permutation_test).parameters else "random_state"
    return st.permutation_test(
        (data.treatment, data.baseline), _mean_difference, permutation_type="independent",
        vectorized=True, n_resamples=n_resamples, alternative=alternative, **{keyword: rng},
    )


@verifier
def permutation_test(baseline: Samples, treatment: Samples, *, alpha: float = 0.05,
                     alternative: str = "two-sided", level: float = 0.95,
                     n_resamples: int = 9999, seed: int | None = 0,
                     metric: str | None = None) -> dict[str, Any]:
    """Two-sample permutation test of mean(treatment) - mean(baseline).

    When ``n_resamples`` is at least the number of distinct splits
    C(n_b + n_t, n_t) the null distribution is enumerated exactly; otherwise
    ``n_resamples`` random relabelings drawn from
    ``numpy.random.default_rng(seed)`` are used and p = (k + 1)/(n_resamples + 1).

    Parameters
    ----------
    baseline, treatment : Mapping[str, Sequence[float]]
        Metric name -> values.
    alpha, alternative, level, metric
        As for :func:`welch_t_test`.
    n_resamples : int, optional
        Number of random relabelings (default 9999).
    seed : int or None, optional
        Seed of the generator (default 0: the same inputs give the same p-value).
        ``None`` draws fresh entropy and is not reproducible.

    Returns
    -------
    dict
        The common keys plus ``method`` ("exact" or "randomized"),
        ``n_resamples`` and ``seed``. ``statistic`` is the observed mean
        difference, ``effect_size`` Hedges' g, the interval the Welch t-interval.

    Raises
    ------
    StatisticsError, MissingMetricError, DefinitionError
        As for :func:`welch_t_test`; DefinitionError also for bad ``n_resamples``
        or ``seed``.

    References
    ----------
    .. [1] Efron, B., Tibshirani, R. J. (1993). An Introduction to the Bootstrap,
       ch. 15 (permutation tests). Chapman & Hall.
    .. [2] Hedges, L. V. (1981), as for :func:`welch_t_test`.
    .. [3] ``scipy.stats.permutation_test``.
    """
    opts = _options(alpha, alternative, level)
    _check_resampling(n_resamples, seed)
    data = _unpaired(baseline, treatment, metric)
    exact = math.comb(data.baseline.size + data.treatment.size, data.treatment.size) <= n_resamples
    extra = {"method": "exact" if exact else "randomized", "n_resamples": int(n_resamples), "seed": seed}
    constant = _constant_unpaired(data, opts, "permutation_test", **extra)
    if constant is not None:
        return constant
    res = _scipy_permutation(data, alternative, int(n_resamples), seed)
    diff = float(data.treatment.mean() - data.baseline.mean())
    return _result(data, opts, test="permutation_test", p_value=res.pvalue, statistic=diff,
                   effect=_hedges_g(data), effect_name="hedges_g", mean_difference=diff,
                   ci=_welch_interval(data, level), **extra)


def _resampled_mean_differences(baseline: np.ndarray, treatment: np.ndarray,
                                baseline_idx: np.ndarray, treatment_idx: np.ndarray) -> np.ndarray:
    """mean(treatment[treatment_idx[k]]) - mean(baseline[baseline_idx[k]]) for each row k.

    Swapping (baseline, treatment) together with (baseline_idx, treatment_idx)
    negates every difference exactly.
    """
    return treatment[treatment_idx].mean(axis=1) - baseline[baseline_idx].mean(axis=1)


def _bootstrap_differences(data: _Data, n_resamples: int, seed: int | None) -> np.ndarray:
    """(n_resamples,) bootstrap mean differences; each batch draws baseline then treatment indices."""
    rng = np.random.default_rng(seed)
    nb, nt = data.baseline.size, data.treatment.size
    rows = max(1, _BOOTSTRAP_BATCH_CELLS // (nb + nt))
    chunks = []
    for start in range(0, n_resamples, rows):
        count = min(rows, n_resamples - start)
        baseline_idx = rng.integers(0, nb, size=(count, nb))
        treatment_idx = rng.integers(0, nt, size=(count, nt))
        chunks.append(_resampled_mean_differences(data.baseline, data.treatment, baseline_idx, treatment_idx))
    return np.concatenate(chunks)


def _percentile_interval(differences: np.ndarray, level: float) -> tuple[float, float]:
    low, high = np.quantile(differences, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _bootstrap_p_value(differences: np.ndarray, alternative: str) -> float:
    """Percentile-interval inversion: share of resampled differences on the null side of 0."""
    total = differences.size + 1
    p_greater = (np.count_nonzero(differences <= 0.0) + 1) / total  # H1: treatment > baseline
    p_less = (np.count_nonzero(differences >= 0.0) + 1) / total
    if alternative == "greater":
        return p_greater
    if alternative == "less":
        return p_less
    return min(1.0, 2 * min(p_greater, p_less))


@verifier
def bootstrap_ci(baseline: Samples, treatment: Samples, *, alpha: float = 0.05,
                 alternative: str = "two-sided", level: float = 0.95,
                 n_resamples: int = 9999, seed: int | None = 0,
                 metric: str | None = None) -> dict[str, Any]:
    """Percentile bootstrap confidence interval of mean(treatment) - mean(baseline).

    Each resample draws n_b baseline and n_t treatment values with replacement
    (independently) from ``numpy.random.default_rng(seed)``; ``ci_low``/``ci_high``
    are the (1 - level)/2 and (1 + level)/2 quantiles (linear interpolation) of
    the resampled differences. The p-value inverts the percentile interval:
    for "greater", p = (#{diff* <= 0} + 1)/(n_resamples + 1); for "less" the
    mirror; two-sided doubles the smaller, capped at 1.

    Parameters
    ----------
    baseline, treatment : Mapping[str, Sequence[float]]
        Metric name -> values.
    alpha, alternative, level, metric
        As for :func:`welch_t_test`.
    n_resamples : int, optional
        Number of bootstrap resamples (default 9999).
    seed : int or None, optional
        Seed of the generator (default 0); ``None`` is not reproducible.

    Returns
    -------
    dict
        The common keys plus ``n_resamples`` and ``seed``. ``statistic`` is the
        observed mean difference and ``effect_size`` Hedges' g of the samples.

    Raises
    ------
    StatisticsError, MissingMetricError, DefinitionError
        As for :func:`permutation_test`.

    References
    ----------
    .. [1] Efron, B., Tibshirani, R. J. (1993). An Introduction to the Bootstrap,
       ch. 13 (percentile intervals). Chapman & Hall.
    .. [2] Hedges, L. V. (1981), as for :func:`welch_t_test`.

    Examples
    --------
    >>> out = bootstrap_ci(seed=1)({"x": [1.0, 2.0, 3.0, 4.0]}, {"x": [3.0, 4.0, 5.0, 6.0]})
    >>> out["ci_low"] <= out["mean_difference"] <= out["ci_high"]
    True
    """
    opts = _options(alpha, alternative, level)
    _check_resampling(n_resamples, seed)
    data = _unpaired(baseline, treatment, metric)
    extra = {"n_resamples": int(n_resamples), "seed": seed}
    constant = _constant_unpaired(data, opts, "bootstrap_ci", **extra)
    if constant is not None:
        return constant
    differences = _bootstrap_differences(data, int(n_resamples), seed)
    diff = float(data.treatment.mean() - data.baseline.mean())
    return _result(data, opts, test="bootstrap_ci", p_value=_bootstrap_p_value(differences, alternative),
                   statistic=diff, effect=_hedges_g(data), effect_name="hedges_g",
                   mean_difference=diff, ci=_percentile_interval(differences, level), **extra)


# --------------------------------------------------------------------------- correction


def _probabilities(p_values: Sequence[float]) -> np.ndarray:
    try:
        array = np.asarray(list(p_values), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatisticsError(f"p-values must be numbers ({exc})") from exc
    if array.ndim != 1:
        raise StatisticsError(f"p-values must be a flat sequence, got shape {array.shape}")
    bad = [float(p) for p in array if not (math.isfinite(p) and 0.0 <= p <= 1.0)]
    if bad:
        raise StatisticsError(f"p-values must lie in [0, 1]; got {bad}")
    return array


def adjust_p_values(p_values: Sequence[float], method: str) -> list[float]:
    """Adjust p-values for multiple comparisons.

    Parameters
    ----------
    p_values : Sequence[float]
        Unadjusted p-values, each in [0, 1], in any order.
    method : {"holm", "bonferroni", "fdr_bh"}
        ``"bonferroni"``: min(1, m p) (family-wise error). ``"holm"``: step-down
        Holm, max over j <= i of (m - j + 1) p_(j) (family-wise error, uniformly
        more powerful than Bonferroni). ``"fdr_bh"``: Benjamini-Hochberg step-up,
        min over j >= i of m p_(j) / j (false discovery rate).

    Returns
    -------
    list[float]
        Adjusted p-values in the input order, clipped to [0, 1], monotone in
        the unadjusted p-values, never smaller than them.

    Raises
    ------
    ValueError
        (:class:`DefinitionError`) for an unknown ``method``.
    StatisticsError
        For p-values that are not numbers in [0, 1].

    References
    ----------
    .. [1] Holm, S. (1979). A simple sequentially rejective multiple test procedure.
       Scandinavian Journal of Statistics 6, 65-70.
    .. [2] Benjamini, Y., Hochberg, Y. (1995). Controlling the false discovery rate.
       J. Royal Statistical Society B 57, 289-300.

    Examples
    --------
    >>> adjust_p_values([0.125, 0.5, 0.25], "holm")
    [0.375, 0.5, 0.5]
    >>> adjust_p_values([0.125, 0.5, 0.25], "fdr_bh")
    [0.375, 0.5, 0.375]
    """
    if method not in CORRECTIONS:
        raise DefinitionError(f"method must be one of 'holm', 'bonferroni', 'fdr_bh'; got {method!r}")
    p = _probabilities(p_values)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "bonferroni":
        adjusted = ranked * m
    elif method == "holm":
        adjusted = np.maximum.accumulate((m - np.arange(m)) * ranked)
    else:
        adjusted = np.minimum.accumulate((m / np.arange(1, m + 1) * ranked)[::-1])[::-1]
    result = np.empty(m)
    result[order] = np.clip(adjusted, 0.0, 1.0)
    return [float(value) for value in result]


#: Name -> verifier factory, for YAML ``verifier: welch_t_test``.
BUILTIN_VERIFIERS: Mapping[str, Any] = MappingProxyType({
    "welch_t_test": welch_t_test,
    "student_t_test": student_t_test,
    "mann_whitney_u": mann_whitney_u,
    "paired_t_test": paired_t_test,
    "wilcoxon_signed_rank": wilcoxon_signed_rank,
    "permutation_test": permutation_test,
    "bootstrap_ci": bootstrap_ci,
})
