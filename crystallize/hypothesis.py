"""Hypotheses: compare each treatment's metrics with the baseline's.

A *verifier* is a callable ``verifier(baseline, treatment) -> result`` where both
arguments map a metric name to its samples (see :mod:`crystallize.verifiers`). A
:class:`Hypothesis` selects metrics, calls its verifier once per treatment (and
per metric group), optionally corrects the p-values for multiple comparisons
across treatments, and ranks the treatments. Failures in user code are
recorded as data in :class:`HypothesisResult.errors`
(:mod:`crystallize.hypothesis_result`).

The call shapes are those of crystallize-ml 0.27: ``@verifier``,
``@hypothesis(verifier=..., metrics=...)``, ``Hypothesis(verifier, metrics,
ranker, name)``, ``verify``, ``rank_treatments`` and ``HypothesisResult``; all
of them stay importable from this module.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from crystallize.errors import MissingMetricError
from crystallize.hypothesis_result import HypothesisResult, Ranking, _plain
from crystallize.verifiers import Samples, VerifierCallable, verifier

__all__ = [
    "CORRECTION_METHODS",
    "Hypothesis",
    "HypothesisResult",
    "VerifierCallable",
    "hypothesis",
    "rank_by_p_value",
    "verifier",
]

logger = logging.getLogger(__name__)

#: Values accepted by ``Hypothesis(correction=...)``.
CORRECTION_METHODS: tuple[str | None, ...] = (None, "holm", "bonferroni", "fdr_bh")

_DEFAULT_ALPHA = 0.05

ReplicateMetrics = Sequence[Mapping[str, Any] | None]


# --------------------------------------------------------------------------- ranking


def rank_by_p_value(result: Any) -> float:
    """Default ranker: the result's ``"p_value"`` (1.0 when absent); lower ranks first.

    Parameters
    ----------
    result : Mapping or Sequence of Mapping
        One verifier output, or the list of outputs of a grouped hypothesis.

    Returns
    -------
    float
        ``result.get("p_value", 1.0)``; for a list, the smallest p-value over
        its groups; 1.0 for anything else.

    Examples
    --------
    >>> rank_by_p_value({"p_value": 0.02})
    0.02
    >>> rank_by_p_value([{"p_value": 0.3}, {"p_value": 0.01}, {}])
    0.01
    """
    if isinstance(result, Mapping):
        return result.get("p_value", 1.0)
    if isinstance(result, (list, tuple)):
        return min((rank_by_p_value(item) for item in result), default=1.0)
    return 1.0


def _empty_ranking() -> dict[str, Any]:
    return Ranking(best=None, ranked=[])


# --------------------------------------------------------------------------- hypothesis


def _normalise_metrics(metrics: Any) -> list[list[str]] | None:
    if metrics is None:
        return None
    if isinstance(metrics, str):
        return [[metrics]]
    items = list(metrics)
    if all(isinstance(item, str) for item in items):
        return [items]
    if all(not isinstance(item, str) and isinstance(item, Sequence) for item in items):
        if all(all(isinstance(name, str) for name in group) for group in items):
            return [list(group) for group in items]
    raise TypeError(
        "metrics must be None, a metric name, a list of names or a list of lists of names; "
        f"got {metrics!r}"
    )


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _replicate_value(record: Mapping[str, Any] | None, metric: str) -> float | None:
    """Mean of the values one replicate recorded for ``metric``; None when absent."""
    if record is None or metric not in record:
        return None
    values = record[metric]
    if isinstance(values, numbers.Real):
        return float(values)
    values = list(values)
    if not values:
        return None
    return math.fsum(float(value) for value in values) / len(values)


def _paired_samples(
    flat_baseline: Samples,
    flat_treatment: Samples,
    baseline_reps: ReplicateMetrics,
    treatment_reps: ReplicateMetrics,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Align per-replicate metrics by index, skipping indices failed on either side."""
    baseline: dict[str, list[float]] = {}
    treatment: dict[str, list[float]] = {}
    for metric in set(flat_baseline) & set(flat_treatment):
        baseline[metric], treatment[metric] = [], []
        for b_rec, t_rec in zip(baseline_reps, treatment_reps):
            b_val, t_val = _replicate_value(b_rec, metric), _replicate_value(t_rec, metric)
            if b_val is not None and t_val is not None:
                baseline[metric].append(b_val)
                treatment[metric].append(t_val)
    for metric in flat_baseline:
        baseline.setdefault(metric, list(flat_baseline[metric]))
    for metric in flat_treatment:
        treatment.setdefault(metric, list(flat_treatment[metric]))
    return baseline, treatment


def _outputs(result: Any) -> list[tuple[int | None, Any]]:
    if isinstance(result, Mapping):
        return [(None, result)]
    if isinstance(result, (list, tuple)):
        return list(enumerate(result))
    return []


def _is_probability(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
        and 0.0 <= float(value) <= 1.0
    )


def _corrected_output(output: Mapping[str, Any], adjusted: float, method: str) -> dict[str, Any]:
    alpha = output.get("alpha", _DEFAULT_ALPHA)
    if not _is_probability(alpha):
        alpha = _DEFAULT_ALPHA
    updated = dict(output)
    updated["p_value_adjusted"] = float(adjusted)
    updated["correction"] = method
    updated["significant"] = bool(adjusted < alpha)
    return updated


def _apply_correction(results: dict[str, Any], method: str) -> dict[str, Any]:
    """Adjust p-values across treatments, separately for each metric group."""
    from crystallize.stats import adjust_p_values  # lazy: keeps scipy out of "import crystallize"

    families: dict[int | None, list[str]] = {}
    for name, result in results.items():
        for index, output in _outputs(result):
            p_value = output.get("p_value") if isinstance(output, Mapping) else None
            if _is_probability(p_value):
                families.setdefault(index, []).append(name)
            elif isinstance(output, Mapping) and "p_value" in output:
                logger.warning("p_value %r of treatment %s is not a probability; not corrected", p_value, name)
    corrected = {name: list(r) if isinstance(r, (list, tuple)) else r for name, r in results.items()}
    for index, names in families.items():
        outputs = [corrected[name] if index is None else corrected[name][index] for name in names]
        adjusted = adjust_p_values([float(out["p_value"]) for out in outputs], method)
        for name, output, value in zip(names, outputs, adjusted):
            new = _corrected_output(output, value, method)
            if index is None:
                corrected[name] = new
            else:
                corrected[name][index] = new
    return corrected


def _score_key(item: tuple[str, Any]) -> tuple[int, Any]:
    score = item[1]
    if isinstance(score, float) and math.isnan(score):
        return (1, 0.0)
    return (0, score)


class Hypothesis:
    """Compare every treatment with the baseline on selected metrics.

    Parameters
    ----------
    verifier : Callable
        ``verifier(baseline, treatment) -> result``, usually a
        :class:`VerifierCallable` such as ``welch_t_test(alpha=0.01)``.
    metrics : str or Sequence[str] or Sequence[Sequence[str]], optional
        ``None``: one group of all baseline metrics; ``"m"``: ``[["m"]]``;
        ``["a", "b"]``: one group; ``[["a"], ["b"]]``: one verifier call per
        group, and the result per treatment is then a list.
    ranker : Callable, optional
        ``ranker(result) -> score``; lower ranks first. Defaults to
        :func:`rank_by_p_value`.
    name : str, optional
        Defaults to ``ranker.__name__``, else ``"hypothesis"``.
    correction : {None, "holm", "bonferroni", "fdr_bh"}, optional
        Multiple-comparison correction across treatments (see
        :func:`crystallize.stats.adjust_p_values`).

    Raises
    ------
    ValueError
        For an unknown ``correction``.
    TypeError
        When ``verifier`` is not callable, is an uncalled verifier factory,
        or ``metrics`` has an unsupported shape.
    """

    def __init__(
        self,
        verifier: Callable[[Samples, Samples], Any],
        metrics: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        ranker: Callable[[Any], Any] | None = None,
        name: str | None = None,
        *,
        correction: str | None = None,
    ) -> None:
        if correction not in CORRECTION_METHODS:
            raise ValueError(
                f"correction must be one of None, 'holm', 'bonferroni', 'fdr_bh'; got {correction!r}"
            )
        if not callable(verifier):
            raise TypeError(f"verifier must be callable, got {type(verifier).__name__}")
        if getattr(verifier, "is_verifier_factory", False) is True:
            raise TypeError(
                f"verifier {getattr(verifier, '__name__', verifier)!r} is a verifier factory; "
                "call it to bind its parameters, e.g. welch_t_test() or welch_t_test(alpha=0.01)"
            )
        self.verifier = verifier
        self.metrics = _normalise_metrics(metrics)
        self.ranker = ranker if ranker is not None else rank_by_p_value
        self.name = name or getattr(ranker, "__name__", None) or "hypothesis"
        self.correction = correction

    def __repr__(self) -> str:
        return f"Hypothesis(name={self.name!r}, verifier={self.verifier!r}, metrics={self.metrics!r})"

    @property
    def paired(self) -> bool:
        """True when the verifier pairs samples by replicate index."""
        return bool(getattr(self.verifier, "paired", False))

    def _groups(self, baseline_metrics: Samples) -> list[list[str]]:
        return self.metrics if self.metrics is not None else [list(baseline_metrics)]

    def verify(self, baseline_metrics: Samples, treatment_metrics: Samples) -> Any:
        """Run the verifier on the selected metrics of one treatment.

        Parameters
        ----------
        baseline_metrics, treatment_metrics : Mapping[str, Sequence]
            Metric name -> values, flattened across replicates.

        Returns
        -------
        Any
            The verifier output for one metric group, or a list of outputs
            (one per group) for several.

        Raises
        ------
        MissingMetricError
            When a selected metric is missing on either side.
        """
        outputs = []
        for group in self._groups(baseline_metrics):
            for metric in group:
                if metric not in baseline_metrics or metric not in treatment_metrics:
                    raise MissingMetricError(metric)
            outputs.append(
                self.verifier(
                    {m: list(baseline_metrics[m]) for m in group},
                    {m: list(treatment_metrics[m]) for m in group},
                )
            )
        return outputs[0] if len(outputs) == 1 else outputs

    def rank_treatments(self, results: Mapping[str, Any]) -> dict[str, Any]:
        """Rank treatments by ``ranker(result)``, ascending; ties keep the given order.

        Returns
        -------
        dict
            A :class:`~crystallize.hypothesis_result.Ranking`: ``{"best": name | None,
            "ranked": [(name, score), ...]}``; ``["ordered"]`` gives the names in order.
        """
        scored = [(name, _plain(self.ranker(result))) for name, result in results.items()]
        ranked = sorted(scored, key=_score_key)
        return Ranking(best=ranked[0][0] if ranked else None, ranked=ranked)

    def _check_recorded(self, baseline: Samples, treatments: Mapping[str, Samples]) -> None:
        for group in self._groups(baseline):
            for metric in group:
                if metric not in baseline and not any(metric in t for t in treatments.values()):
                    raise MissingMetricError(metric)

    def _samples_for(
        self,
        baseline: Samples,
        treatment: Samples,
        baseline_replicates: ReplicateMetrics | None,
        treatment_replicates: ReplicateMetrics | None,
    ) -> tuple[Samples, Samples]:
        if self.paired and baseline_replicates is not None and treatment_replicates is not None:
            return _paired_samples(baseline, treatment, baseline_replicates, treatment_replicates)
        return baseline, treatment

    def evaluate(
        self,
        baseline: Samples,
        treatments: Mapping[str, Samples],
        *,
        baseline_replicates: ReplicateMetrics | None = None,
        treatment_replicates: Mapping[str, ReplicateMetrics] | None = None,
    ) -> HypothesisResult:
        """Verify every treatment, correct p-values, rank, and collect errors.

        Parameters
        ----------
        baseline : Mapping[str, Sequence]
            Baseline metrics flattened across replicates.
        treatments : Mapping[str, Mapping[str, Sequence]]
            Treatment name -> metrics, in the order results should keep.
        baseline_replicates : Sequence[Mapping or None], optional
            Baseline metrics per replicate index (None: the replicate failed).
            Used only by paired verifiers, to align values by replicate.
        treatment_replicates : Mapping[str, Sequence[Mapping or None]], optional
            The same per treatment.

        Returns
        -------
        HypothesisResult
            Results of treatments whose verifier succeeded; ``errors`` holds
            ``"TypeName: message"`` for the others and for a failing ranker.

        Raises
        ------
        MissingMetricError
            When a selected metric is missing from the baseline and from every
            treatment. A metric missing only for some treatments is recorded as
            an error of those treatments.
        """
        self._check_recorded(baseline, treatments)
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        replicates = treatment_replicates or {}
        for name, metrics in treatments.items():
            b_samples, t_samples = self._samples_for(baseline, metrics, baseline_replicates, replicates.get(name))
            try:
                results[name] = self.verify(b_samples, t_samples)
            except Exception as exc:  # user verifier code: failures are data
                logger.warning("hypothesis %s: verifier failed for treatment %s: %s", self.name, name, exc)
                errors[name] = _error_text(exc)
        if self.correction is not None:
            results = _apply_correction(results, self.correction)
        try:
            ranking = self.rank_treatments(results)
        except Exception as exc:  # user ranker code: failures are data
            logger.warning("hypothesis %s: ranker failed: %s", self.name, exc)
            errors["ranker"] = _error_text(exc)
            ranking = _empty_ranking()
        return HypothesisResult(name=self.name, results=results, ranking=ranking, errors=errors)


def hypothesis(
    *,
    verifier: Callable[[Samples, Samples], Any],
    metrics: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
    name: str | None = None,
    correction: str | None = None,
) -> Callable[[Callable[[Any], Any]], Hypothesis]:
    """Decorate a ranker function and return a :class:`Hypothesis` instance.

    Parameters
    ----------
    verifier : Callable
        A bound verifier, e.g. ``welch_t_test(alpha=0.05)``.
    metrics : str or Sequence, optional
        Metric selection, as for :class:`Hypothesis`.
    name : str, optional
        Defaults to the decorated function's name.
    correction : {None, "holm", "bonferroni", "fdr_bh"}, optional
        Multiple-comparison correction across treatments.

    Returns
    -------
    Callable
        Decorator turning ``ranker(result) -> score`` into a ``Hypothesis``.

    Examples
    --------
    >>> from crystallize.stats import welch_t_test
    >>> @hypothesis(verifier=welch_t_test(), metrics="auc")
    ... def auc_improves(result):
    ...     return result["p_value"]
    >>> auc_improves.name
    'auc_improves'
    """

    def decorate(fn: Callable[[Any], Any]) -> Hypothesis:
        return Hypothesis(verifier, metrics, ranker=fn, name=name or fn.__name__, correction=correction)

    return decorate
