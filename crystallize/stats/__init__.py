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

Modules: ``parametric`` (t-tests), ``rank`` (Mann-Whitney, Wilcoxon),
``resampling`` (permutation test, bootstrap), ``corrections``
(:func:`adjust_p_values`); the private ``_samples`` (input checks),
``_effects`` (effect sizes, intervals) and ``_result`` (the result dict and
the degenerate-sample rule) are shared by all verifiers. Import the public
names from this package.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from crystallize.stats._samples import ALTERNATIVES
from crystallize.stats.corrections import CORRECTIONS, adjust_p_values
from crystallize.stats.parametric import paired_t_test, student_t_test, welch_t_test
from crystallize.stats.rank import mann_whitney_u, wilcoxon_signed_rank
from crystallize.stats.resampling import (  # noqa: F401 - the private helpers are tested directly
    _percentile_interval,
    _resampled_mean_differences,
    bootstrap_ci,
    permutation_test,
)

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
