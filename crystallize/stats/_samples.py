"""Verifier inputs: options, metric selection and sample validation.

Every built-in verifier starts here: :func:`_options` checks ``alpha``,
``alternative`` and ``level``; :func:`_unpaired` and :func:`_paired` pick the
metric and turn both sides into validated ``(n,) float64`` arrays, raising
:class:`~crystallize.errors.StatisticsError` (naming the metric) for too few,
non-finite or non-numeric values and for unequal paired lengths.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crystallize.errors import DefinitionError, MissingMetricError, StatisticsError


#: Accepted ``alternative=`` values; "greater" means treatment > baseline.
ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")

Samples = Mapping[str, Sequence[float]]


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

    @property
    def mean_difference(self) -> float:
        """mean(treatment) - mean(baseline)."""
        return float(self.treatment.mean() - self.baseline.mean())


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


_ROUNDING = 16 * float(np.finfo(float).eps)  # a few units in the last place: what float arithmetic leaves


def _is_constant(values: np.ndarray, *, scale: float | None = None) -> bool:
    """All values equal, up to rounding relative to ``scale`` (default: their own magnitude).

    ``[0.1 + 0.2, 0.3]`` or differences ``(x + 0.5) - x`` are constant for a t-test: their
    spread is rounding error, and passing it on would give an effect of 1e16 and a p-value
    of 1e-80 where the honest answer is an infinite effect (spec §9: a clear error).
    Rank tests compare exactly (their ranks are defined however small the spread).
    """
    spread = float(np.ptp(values))
    if scale is None:
        scale = float(np.max(np.abs(values))) if values.size else 0.0
    return spread <= _ROUNDING * scale


def _same_value(a: float, b: float) -> bool:
    """Equal up to rounding (see :func:`_is_constant`)."""
    return abs(a - b) <= _ROUNDING * max(abs(a), abs(b))
