"""t-tests: Welch's, Student's and the paired t-test."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy import stats as st

from crystallize.stats._effects import (
    _hedges_g_paired,
    _paired_interval,
    _pooled_sd,
    _t_interval,
    _welch_parts,
)
from crystallize.stats._result import (
    _constant_unpaired,
    _hedges_result,
    _no_difference,
    _result,
    _undefined_effect,
)
from crystallize.stats._samples import _ROUNDING, Samples, _is_constant, _options, _paired, _unpaired
from crystallize.verifiers import verifier

__all__ = ["paired_t_test", "student_t_test", "welch_t_test"]


@contextlib.contextmanager
def _constant_sample_ok() -> Iterator[None]:
    """Silence scipy's "Precision loss" warning, a false alarm when one sample is constant.

    Truly degenerate inputs (both samples constant) never reach scipy.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        yield


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
        The common keys (see :mod:`crystallize.stats`) plus ``df``, the
        Welch-Satterthwaite degrees of freedom. ``effect_size`` is Hedges' g
        with the pooled SD.

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
    return _hedges_result(data, opts, test="welch_t_test", p_value=res.pvalue, statistic=res.statistic,
                          ci=_t_interval(data.mean_difference, se, df, level), df=df)


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
    se = _pooled_sd(data) * math.sqrt(1 / nb + 1 / nt)
    return _hedges_result(data, opts, test="student_t_test", p_value=res.pvalue, statistic=res.statistic,
                          ci=_t_interval(data.mean_difference, se, df, level), df=df)


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
    magnitude = float(max(np.max(np.abs(data.baseline)), np.max(np.abs(data.treatment)))) if diffs.size else 0.0
    if _is_constant(diffs, scale=magnitude):  # rounding in the subtraction is relative to the values
        if abs(float(np.mean(diffs))) <= _ROUNDING * magnitude:
            return _no_difference(data, opts, "paired_t_test", "hedges_g", df=df)
        raise _undefined_effect(
            data, "paired_t_test", f"every paired difference equals {float(diffs[0])!r} (zero variance)"
        )
    with _constant_sample_ok():
        res = st.ttest_rel(data.treatment, data.baseline, alternative=alternative)
    return _result(data, opts, test="paired_t_test", p_value=res.pvalue, statistic=res.statistic,
                   effect=_hedges_g_paired(data, diffs), effect_name="hedges_g",
                   mean_difference=float(diffs.mean()), ci=_paired_interval(diffs, level), df=df)
