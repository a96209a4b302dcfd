"""Multiple-comparison correction of p-values (Holm, Bonferroni, Benjamini-Hochberg)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from crystallize.errors import DefinitionError, StatisticsError

__all__ = ["CORRECTIONS", "adjust_p_values"]

#: Accepted ``method=`` values of :func:`adjust_p_values`.
CORRECTIONS: tuple[str, ...] = ("holm", "bonferroni", "fdr_bh")


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
