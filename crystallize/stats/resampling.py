"""Resampling verifiers: the permutation test and the percentile bootstrap."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
from scipy import stats as st

from crystallize.stats._effects import _welch_interval
from crystallize.stats._result import _constant_unpaired, _hedges_result
from crystallize.stats._samples import Samples, _check_resampling, _Data, _options, _unpaired
from crystallize.verifiers import verifier

__all__ = ["bootstrap_ci", "permutation_test"]

_BOOTSTRAP_BATCH_CELLS = 2_000_000


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
    return _hedges_result(data, opts, test="permutation_test", p_value=res.pvalue,
                          statistic=data.mean_difference, ci=_welch_interval(data, level), **extra)


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
    return _hedges_result(data, opts, test="bootstrap_ci", p_value=_bootstrap_p_value(differences, alternative),
                          statistic=data.mean_difference, ci=_percentile_interval(differences, level),
                          **extra)
