"""Rank tests: Mann-Whitney U and the Wilcoxon signed-rank test."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as st

from crystallize.stats._effects import _cliffs_delta, _paired_interval, _rank_biserial, _welch_interval
from crystallize.stats._result import _no_difference, _result
from crystallize.stats._samples import Samples, _options, _paired, _unpaired
from crystallize.verifiers import verifier

__all__ = ["mann_whitney_u", "wilcoxon_signed_rank"]

_EXACT_MANN_WHITNEY_MAX_N = 20
_EXACT_WILCOXON_MAX_N = 25


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
    if np.ptp(pooled) == 0.0:  # exactly: ranks are defined however small the spread
        return _no_difference(data, opts, "mann_whitney_u", "cliffs_delta", nb * nt / 2, method="none")
    ties = np.unique(pooled).size < pooled.size
    method = "exact" if not ties and max(nb, nt) <= _EXACT_MANN_WHITNEY_MAX_N else "asymptotic"
    res = st.mannwhitneyu(data.treatment, data.baseline, alternative=alternative, method=method)
    u = float(res.statistic)
    return _result(data, opts, test="mann_whitney_u", p_value=res.pvalue, statistic=u,
                   effect=_cliffs_delta(u, nb, nt), effect_name="cliffs_delta",
                   mean_difference=data.mean_difference,
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
    return _result(data, opts, test="wilcoxon_signed_rank", p_value=res.pvalue, statistic=w_plus,
                   effect=_rank_biserial(w_plus, w_minus), effect_name="rank_biserial",
                   mean_difference=float(diffs.mean()), ci=_paired_interval(diffs, level),
                   method=method, n_nonzero=int(nonzero.size))
