"""The result dict every built-in verifier returns, and the degenerate-sample rule.

:func:`_result` checks that every number is finite, clips the p-value to
[0, 1] and lays out the common keys (see :mod:`crystallize.stats`).
:func:`_no_difference` and :func:`_constant_unpaired` apply the rule for
samples without variation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from crystallize.errors import StatisticsError
from crystallize.stats._effects import _hedges_g
from crystallize.stats._samples import _Data, _Options, _is_constant, _same_value


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


def _hedges_result(data: _Data, opts: _Options, *, test: str, p_value: Any, statistic: Any,
                   ci: tuple[Any, Any], **extra: Any) -> dict[str, Any]:
    """Result of a test of the mean difference whose effect size is Hedges' g."""
    return _result(data, opts, test=test, p_value=p_value, statistic=statistic,
                   effect=_hedges_g(data), effect_name="hedges_g",
                   mean_difference=data.mean_difference, ci=ci, **extra)


def _no_difference(data: _Data, opts: _Options, test: str, effect_name: str,
                   statistic: float = 0.0, **extra: Any) -> dict[str, Any]:
    """Result for samples that show no difference at all (the rule in :mod:`crystallize.stats`)."""
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
    if _same_value(float(np.mean(data.baseline)), float(np.mean(data.treatment))):
        return _no_difference(data, opts, test, "hedges_g", **extra)
    raise _undefined_effect(
        data, test, f"both samples are constant but differ (baseline {float(data.baseline[0])!r}, "
        f"treatment {float(data.treatment[0])!r})"
    )
