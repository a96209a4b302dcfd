"""Effect sizes and confidence intervals shared by the built-in verifiers.

Hedges' g (two-sample and paired), Cliff's delta, the matched-pairs
rank-biserial correlation, and t-intervals of a mean difference (pooled,
Welch-Satterthwaite, or of paired differences).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special
from scipy import stats as st

from crystallize.errors import StatisticsError
from crystallize.stats._samples import _Data


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
    return _standardised(data, data.mean_difference, _pooled_sd(data),
                         data.baseline.size + data.treatment.size - 2)


def _hedges_g_paired(data: _Data, diffs: np.ndarray) -> float:
    """Hedges' g of paired differences: mean(d) / sd(d), times J(n - 1)."""
    return _standardised(data, float(diffs.mean()), float(diffs.std(ddof=1)), diffs.size - 1)


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
    return _t_interval(data.mean_difference, se, df, level)


def _paired_interval(diffs: np.ndarray, level: float) -> tuple[float, float]:
    """t-interval of mean(diffs) with n - 1 degrees of freedom; ``diffs`` is (n,) float64."""
    se = float(diffs.std(ddof=1)) / math.sqrt(diffs.size)
    return _t_interval(float(diffs.mean()), se, diffs.size - 1, level)


def _cliffs_delta(u: float, n_baseline: int, n_treatment: int) -> float:
    """Cliff's delta P(t > b) - P(t < b) from the treatment's Mann-Whitney U: 2U/(n_b n_t) - 1."""
    return 2 * u / (n_baseline * n_treatment) - 1


def _rank_biserial(w_plus: float, w_minus: float) -> float:
    """Matched-pairs rank-biserial correlation (W+ - W-)/(W+ + W-), in [-1, 1]."""
    return (w_plus - w_minus) / (w_plus + w_minus)
