"""What a run returns: metrics per condition, hypotheses, artifacts, errors, provenance."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crystallize.hypothesis import HypothesisResult

__all__ = [
    "AggregateData",
    "Deferred",
    "ExperimentMetrics",
    "ReplicateResult",
    "Result",
    "TreatmentMetrics",
    "TreatmentMetricsMap",
    "plain_key",
    "versioned_key",
]


def versioned_key(name: str, version: int) -> str:
    """The result key of a treatment whose metrics come from version ``version``."""
    return f"{name} (v{version})"


def plain_key(key: str) -> str:
    """Strip a ``" (vN)"`` suffix; other keys are returned unchanged."""
    head, sep, tail = key.rpartition(" (v")
    return head if sep and tail.endswith(")") and tail[:-1].isdigit() else key


@dataclass
class TreatmentMetrics:
    """Metrics of one condition.

    Attributes
    ----------
    metrics : dict[str, list]
        Metric name -> values, flattened across replicates in replicate order
        (a replicate that recorded a metric k times contributes k values).
    replicates : list[dict[str, list] or None]
        The same values per replicate index; ``None`` marks a failed replicate.
    seeds : list[int]
        Per-replicate seeds, by replicate index.
    """

    metrics: dict[str, list[Any]]
    replicates: list[dict[str, list[Any]] | None] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


class TreatmentMetricsMap(Mapping[str, TreatmentMetrics]):
    """Treatment metrics keyed ``"<name> (v<N>)"``; plain names are accepted too.

    ``N`` is the store version whose run produced that condition's metrics. ``[]``,
    ``get``, ``in`` and ``==`` accept either form; iteration yields the suffixed keys.
    """

    __slots__ = ("_items", "_versions")

    def __init__(self, items: Mapping[str, TreatmentMetrics] | None = None,
                 versions: Mapping[str, int] | None = None) -> None:
        self._items = {plain_key(k): v for k, v in (items or {}).items()}
        versions = dict(versions or {})
        self._versions = {k: versions.get(k, 0) for k in self._items}

    def __getitem__(self, key: str) -> TreatmentMetrics:
        name = key if key in self._items else plain_key(key)
        if name not in self._items or (name != key and versioned_key(name, self._versions[name]) != key):
            raise KeyError(key)
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return (versioned_key(k, self._versions[k]) for k in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except (KeyError, TypeError):
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        try:
            return len(other) == len(self) and all(self[k] == v for k, v in other.items())
        except KeyError:
            return False

    __hash__ = None  # type: ignore[assignment]

    def plain(self) -> dict[str, TreatmentMetrics]:
        """A copy keyed by plain treatment names."""
        return dict(self._items)

    def version_of(self, name: str) -> int:
        """Version that holds ``name`` (plain or suffixed)."""
        return self._versions[plain_key(name)]

    def __repr__(self) -> str:
        return repr({versioned_key(k, self._versions[k]): v for k, v in self._items.items()})


@dataclass
class ExperimentMetrics:
    """Baseline metrics, treatment metrics and hypothesis results of one experiment run."""

    baseline: TreatmentMetrics
    treatments: TreatmentMetricsMap
    hypotheses: list[HypothesisResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.treatments, TreatmentMetricsMap):
            self.treatments = TreatmentMetricsMap(self.treatments)

    def to_df(self) -> Any:
        """Hypothesis results as a pandas DataFrame (one row per hypothesis and treatment)."""
        import pandas as pd

        rows = []
        for hyp in self.hypotheses:
            for treatment, res in hyp.results.items():
                groups = res if isinstance(res, list) else [res]
                for group in groups:
                    rows.append({"condition": treatment, "hypothesis": hyp.name, **dict(group)})
        return pd.DataFrame(rows)


@dataclass
class AggregateData:
    """Per-condition aggregates collected from replicates (kept from 0.27)."""

    baseline_metrics: dict[str, list[Any]]
    treatment_metrics_dict: dict[str, dict[str, list[Any]]]
    baseline_seeds: list[int]
    treatment_seeds_agg: dict[str, list[int]]
    provenance_runs: dict[str, dict[int, list[dict[str, Any]]]]
    errors: dict[str, BaseException]


@dataclass
class ReplicateResult:
    """Everything one replicate produced across conditions (the custom-loop contract)."""

    baseline_metrics: dict[str, list[Any]]
    baseline_seed: int | None
    treatment_metrics: dict[str, dict[str, list[Any]]]
    treatment_seeds: dict[str, int]
    errors: dict[str, BaseException]
    provenance: dict[str, list[dict[str, Any]]]


def _jsonable(value: Any, path: tuple[int, ...] = ()) -> Any:
    """Best-effort conversion to JSON types (numpy scalars and arrays included); a container
    that contains itself becomes its ``repr``."""
    if isinstance(value, (Mapping, list, tuple)):
        if id(value) in path:
            return repr(value)
        inner = (*path, id(value))
        if isinstance(value, Mapping):
            return {str(k): _jsonable(v, inner) for k, v in value.items()}
        return [_jsonable(v, inner) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


class Deferred:
    """A provenance value built only when ``Result.provenance`` is first read.

    Parameters
    ----------
    build : Callable[[], Any]
        Returns the value; called at most once.
    """

    __slots__ = ("build",)

    def __init__(self, build: Callable[[], Any]) -> None:
        self.build = build


class Result:
    """The outcome of :meth:`Experiment.run`.

    Attributes
    ----------
    metrics : ExperimentMetrics
        ``result.metrics.baseline.metrics["m"]`` and
        ``result.metrics.treatments["<name> (vN)"].metrics["m"]`` (plain name works too).
    artifacts : dict[str, dict[str, Path]]
        Artifact file name -> condition -> path of the lowest replicate that wrote it.
    errors : dict[str, BaseException]
        ``"<condition>_rep_<r>"`` -> the exception; it carries ``.traceback_str``,
        ``.experiment``, ``.condition`` and ``.replicate``.
    provenance : dict
        0.27's four keys: ``pipeline_signature``, ``replicates``, ``seeds`` (condition ->
        replicate seeds) and ``ctx_changes`` (condition -> replicate -> step records).
    run_info : dict
        Where the run put things in the store: ``version`` (the version folder this run
        wrote, ``None`` when everything was reused), ``conditions`` (condition -> version
        holding it), ``blocked`` (conditions that could not run because an upstream
        condition they read did not complete) and ``master_seed``; after
        :meth:`Experiment.debug`, also ``store_root`` (the temporary store it used).
    """

    def __init__(self, metrics: ExperimentMetrics, artifacts: Mapping[str, Any] | None = None,
                 errors: Mapping[str, BaseException] | None = None, provenance: Mapping[str, Any] | None = None,
                 run_info: Mapping[str, Any] | None = None) -> None:
        self.metrics = metrics
        self.artifacts = dict(artifacts or {})
        self.errors = dict(errors or {})
        self.provenance = dict(provenance or {})
        self.run_info = dict(run_info or {})

    @property
    def provenance(self) -> dict[str, Any]:
        """A plain dict; values given as :class:`Deferred` are built the first time it is read."""
        if self._deferred:
            for key, value in list(self._provenance.items()):
                if isinstance(value, Deferred):
                    self._provenance[key] = value.build()
            self._deferred = False
        return self._provenance

    @provenance.setter
    def provenance(self, value: dict[str, Any]) -> None:
        self._provenance = value
        self._deferred = any(isinstance(v, Deferred) for v in value.values())

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_provenance"], state["_deferred"] = self.provenance, False  # deferred values are built first
        return state

    def get_artifact(self, name: str) -> Any:
        """Paths of artifact ``name`` per condition, or ``None``."""
        return self.artifacts.get(name)

    def get_hypothesis(self, name: str) -> HypothesisResult | None:
        """The hypothesis result called ``name``, or ``None``."""
        return next((h for h in self.metrics.hypotheses if h.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (keys as in 0.27: timestamp, metrics, hypotheses, artifacts, errors, provenance;
        treatments by plain name, spec §11)."""
        return {
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "metrics": {
                "baseline": _jsonable(self.metrics.baseline.metrics),
                "treatments": {k: _jsonable(v.metrics) for k, v in self.metrics.treatments.plain().items()},
            },
            "hypotheses": [_jsonable({"name": h.name, "results": h.results, "ranking": h.ranking, "errors": h.errors})
                           for h in self.metrics.hypotheses],
            "artifacts": sorted(self.artifacts),
            "errors": {k: f"{type(v).__name__}: {v}" for k, v in self.errors.items()},
            "provenance": _jsonable(self.provenance),
        }

    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str | None:
        """Serialise :meth:`to_dict`; write to ``path`` when given (returns ``None``), else return the text."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is None:
            return text
        Path(path).write_text(text)
        return None

    def to_parquet(self, path: str | Path) -> None:
        """Write one row per condition and metric (``condition, metric, values, mean``) as Parquet.

        Needs pandas and a Parquet engine (pyarrow). Treatment rows use plain names.
        """
        import pandas as pd

        conditions = {"baseline": self.metrics.baseline, **self.metrics.treatments.plain()}
        rows = []
        for condition, tm in conditions.items():
            for metric, values in tm.metrics.items():
                numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
                mean = sum(numbers) / len(numbers) if numbers and len(numbers) == len(values) else None
                rows.append({"condition": condition, "metric": metric, "values": list(values), "mean": mean})
        pd.DataFrame(rows, columns=["condition", "metric", "values", "mean"]).to_parquet(path)

    def print_tree(self, fmt: str = "treatment > replicate > step > action") -> None:
        """Print the provenance tree (levels from ``treatment``, ``replicate``, ``step``, ``action``)."""
        from crystallize.results_tree import print_provenance_tree

        print_provenance_tree(self.provenance.get("ctx_changes", {}), fmt)

    def __repr__(self) -> str:
        return (f"Result(baseline={sorted(self.metrics.baseline.metrics)}, treatments={list(self.metrics.treatments)}, "
                f"errors={len(self.errors)})")
