"""The Experiment definition: datasource, pipeline, baseline, treatments, replicates, hypotheses.

Building an experiment does no I/O. ``run``, ``status`` and ``apply`` are thin facades over
``crystallize.execution`` and ``crystallize.graph.plan``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystallize.datasources.artifacts import Artifact
from crystallize.datasources.datasource import DataSource
from crystallize.errors import DuplicateNameError
from crystallize.names import BASELINE, validate_name
from crystallize.plugins.base import BasePlugin
from crystallize.plugins.builtin import ArtifactPlugin, LoggingPlugin, SeedPlugin
from crystallize.steps import Pipeline, PipelineStep
from crystallize.treatments import Treatment
from crystallize.utils.cache import compute_hash

if TYPE_CHECKING:
    from crystallize.experiment_builder import ExperimentBuilder
    from crystallize.graph.status import NodeStatus
    from crystallize.hypothesis import Hypothesis
    from crystallize.results import Result

__all__ = ["Experiment", "check_replicates", "check_treatments"]


def check_replicates(value: object, *, where: str = "replicates") -> int:
    """An ``int`` replicate count; values below 1 become 1 (0.27 rule)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where} must be an int, not {type(value).__name__}")
    return max(1, value)


def check_treatments(treatments: Sequence[Any], *, owner: str) -> list[Treatment]:
    """Call factories, and reject duplicates or names equal up to case."""
    out: list[Treatment] = []
    seen: dict[str, str] = {}
    for item in treatments:
        t = item() if callable(item) and not isinstance(item, Treatment) else item
        if not isinstance(t, Treatment):
            raise TypeError(f"experiment {owner!r}: treatment {item!r} is not a Treatment")
        folded = t.name.casefold()
        if folded == BASELINE and t.name != BASELINE:  # "baseline" itself keeps 0.27's meaning
            raise DuplicateNameError(
                f"experiment {owner!r}: treatment {t.name!r} would share a folder with the baseline", name=t.name)
        if folded in seen:
            raise DuplicateNameError(
                f"experiment {owner!r}: treatments {seen[folded]!r} and {t.name!r} would share a folder", name=t.name)
        seen[folded] = t.name
        out.append(t)
    return out


class Experiment:
    """One experiment: a baseline and treatments, each run for ``replicates`` replicates.

    Parameters
    ----------
    datasource : DataSource
        Produces each replicate's input (an upstream :class:`Artifact`, or an
        :class:`ExperimentInput` of several, wires this experiment into a graph).
    pipeline : Pipeline or Sequence[PipelineStep]
        The steps.
    plugins : Sequence[BasePlugin], optional
        Defaults are added for whichever of ``ArtifactPlugin(root_dir="data")``,
        ``SeedPlugin()`` and ``LoggingPlugin()`` is missing.
    name : str, optional
        Folder name in the store and graph node name; validated as a path segment.
        Without it the store folder is :attr:`id`.
    initial_ctx : Mapping[str, Any], optional
        Keys every replicate context starts with.
    outputs : Sequence[Artifact], optional
        Artifacts this experiment produces (keyed by file name in :attr:`outputs`).
    treatments : Sequence[Treatment], optional
        Conditions compared with the baseline; factories are called for you.
    hypotheses : Sequence[Hypothesis], optional
        Checked after every run over the replicate metrics.
    replicates : int
        Replicates per condition (values below 1 become 1).

    Raises
    ------
    TypeError
        For a non-int ``replicates``, a non-DataSource ``datasource`` or a non-Treatment.
    InvalidNameError
        For a name that cannot be a folder name.
    DuplicateNameError
        For two treatments whose names differ only by case (or not at all).
    """

    VALID_EXECUTOR_TYPES = {"thread", "process"}
    strategy = "rerun"  # what run() does without strategy= (0.27's class default)

    def __init__(self, datasource: DataSource, pipeline: Pipeline | Sequence[PipelineStep],
                 plugins: Sequence[BasePlugin] | None = None, *, description: str | None = None,
                 name: str | None = None, initial_ctx: Mapping[str, Any] | None = None,
                 outputs: Sequence[Artifact] | None = None, treatments: Sequence[Treatment] | None = None,
                 hypotheses: Sequence[Hypothesis] | None = None, replicates: int = 1) -> None:
        if not isinstance(datasource, DataSource):
            hint = " (did you forget to call the datasource factory?)" if callable(datasource) else ""
            if isinstance(datasource, Mapping):
                hint = " (for several inputs use ExperimentInput(alias=source, ...))"
            raise TypeError(f"datasource must be a DataSource, not {datasource!r}{hint}")
        self.datasource = datasource
        self.pipeline = pipeline if isinstance(pipeline, Pipeline) else Pipeline(list(pipeline))
        self.name = validate_name(name, what="experiment") if name is not None else None
        self.description = description
        self.initial_ctx = dict(initial_ctx or {})
        self.replicates = check_replicates(replicates)
        self.treatments = check_treatments(treatments or [], owner=name or "?")
        self.hypotheses = list(hypotheses or [])
        self.outputs: dict[str, Artifact] = {}
        for artifact in outputs or []:
            self._add_output(artifact.name, artifact)
        self.plugins = list(plugins or [])
        for cls, default in ((ArtifactPlugin, lambda: ArtifactPlugin(root_dir="data")), (SeedPlugin, SeedPlugin),
                             (LoggingPlugin, LoggingPlugin)):
            if not any(isinstance(p, cls) for p in self.plugins):
                self.plugins.append(default())
        for plugin in self.plugins:
            plugin.init_hook(self)

    def _add_output(self, key: str, artifact: Artifact) -> None:
        if not isinstance(artifact, Artifact):
            raise TypeError(f"experiment {self.name!r}: output {key!r} is not an Artifact")
        self.outputs[key] = artifact
        self.claim_outputs()

    def claim_outputs(self) -> None:
        """Make this experiment the producer of its output artifacts.

        One :class:`Artifact` object may be listed in the outputs of several experiments
        built one after another (0.27 allowed it: the last one built produces it); a graph
        holding two of them is an error (:class:`ExperimentGraph` checks). So the producer
        is claimed again whenever this experiment runs or joins a graph.
        """
        for artifact in self.outputs.values():
            artifact.producer_name = self.name
            artifact._producer = self  # type: ignore[attr-defined]

    # identity -----------------------------------------------------------------
    @property
    def id(self) -> str:
        """``compute_hash(pipeline.signature())``: SHA-256 of the pickled signature, as in 0.27
        (stable across processes, since the signature holds no memory addresses)."""
        return compute_hash(self.pipeline.signature())

    @property
    def store_name(self) -> str:
        """Folder name in the store: the name, else :attr:`id`."""
        return self.name or self.id

    @classmethod
    def builder(cls, name: str | None = None) -> ExperimentBuilder:
        """A fluent builder: ``Experiment.builder("x").datasource(...).add_step(...).build()``."""
        from crystallize.experiment_builder import ExperimentBuilder

        return ExperimentBuilder(name)

    @classmethod
    def from_yaml(cls, config_path: str | Path) -> Experiment:
        """Load one experiment from a ``config.yaml`` (see docs/yaml.md)."""
        from crystallize.config.loader import load_experiment

        return load_experiment(Path(config_path))

    def get_plugin(self, cls: type) -> Any:
        """The first plugin that is an instance of ``cls``, or ``None``."""
        return next((p for p in self.plugins if isinstance(p, cls)), None)

    def validate(self) -> None:
        """Check that a datasource and a pipeline are set."""
        from crystallize.errors import ValidationError

        if self.datasource is None or self.pipeline is None:
            raise ValidationError(f"experiment {self.name!r} needs a datasource and a pipeline")

    @property
    def upstream_artifacts(self) -> list[Artifact]:
        """Artifacts of other experiments this one reads (graph edges)."""
        ds = self.datasource
        return [ds] if isinstance(ds, Artifact) else list(getattr(ds, "required_outputs", []))

    # running --------------------------------------------------------------------
    def run(self, *, treatments: Sequence[Treatment] | None = None, hypotheses: Sequence[Hypothesis] | None = None,
            replicates: int | None = None, strategy: str | None = None) -> Result:
        """Run the experiment and store its results.

        Parameters
        ----------
        treatments : Sequence[Treatment], optional
            Replaces the stored treatment list for this call only.
        hypotheses : Sequence[Hypothesis], optional
            Replaces the stored hypotheses for this call only.
        replicates : int, optional
            Overrides the replicate count (else ``datasource.replicates``, else
            ``self.replicates``).
        strategy : {"rerun", "resume"}, optional
            ``"rerun"`` (default) runs everything; ``"resume"`` reuses every condition whose
            stored fingerprint matches and runs only what is stale or missing.

        Returns
        -------
        Result

        Raises
        ------
        ValueError
            Hypotheses without treatments, or an unknown strategy.
        MissingMetricError
            A hypothesis names a metric no condition recorded (raised after results are stored).
        ExecutionError
            A plugin's ``run_experiment_loop`` returned without running every replicate
            (raised after the replicates that ran are stored).
        """
        from crystallize.execution.engine import run_experiment

        self.claim_outputs()
        outcome = _outside_event_loop(lambda: run_experiment(
            self, treatments=treatments, hypotheses=hypotheses, replicates=replicates, strategy=strategy))
        if outcome.deferred is not None:
            raise outcome.deferred
        return outcome.result

    async def arun(self, *, treatments: Sequence[Treatment] | None = None,
                   hypotheses: Sequence[Hypothesis] | None = None, replicates: int | None = None,
                   strategy: str | None = None) -> Result:
        """Async form of :meth:`run` (the run happens in a worker thread)."""
        return await asyncio.to_thread(self.run, treatments=treatments, hypotheses=hypotheses,
                                       replicates=replicates, strategy=strategy)

    def status(self) -> NodeStatus:
        """What a ``strategy="resume"`` run would do, and why (no run, no writes)."""
        from crystallize.graph.model import ExperimentGraph

        graph = ExperimentGraph()
        graph.add_experiment(self, _standalone=True)
        return graph.status()[self.store_name]

    def apply(self, treatment: Treatment | str | None = None, *, data: Any = None, seed: int | None = None) -> Any:
        """Run the pipeline once, in memory, and return the last step's data.

        Nothing is written to the store and no plugin hooks run; the steps' ``setup`` and
        ``teardown`` do. Steps returning ``(data, metrics)`` are unpacked as in :meth:`run`;
        async steps are awaited.
        """
        from crystallize.execution.single import apply_once

        return apply_once(self, treatment, data=data, seed=seed)

    def debug(self, treatment: str | Treatment | None = None, *, verbose: bool = True) -> Result:
        """One replicate of the baseline (and ``treatment``), serial, without hypotheses or storing."""
        from crystallize.execution.single import debug_run

        return debug_run(self, treatment, verbose=verbose)

    def optimize(self, optimizer: Any, num_trials: int, replicates_per_trial: int = 1) -> Treatment:
        """Ask/tell loop: each trial runs the optimizer's treatments and reports the objective mean."""
        from crystallize.execution.single import optimize

        return optimize(self, optimizer, num_trials, replicates_per_trial)

    async def aoptimize(self, optimizer: Any, num_trials: int, replicates_per_trial: int = 1) -> Treatment:
        """Async form of :meth:`optimize`."""
        return await asyncio.to_thread(self.optimize, optimizer, num_trials, replicates_per_trial)

    def artifact_datasource(self, step: str, name: str = "data.json", condition: str = BASELINE, *,
                            require_metadata: bool = False) -> DataSource:
        """A source yielding the ``Path`` of a file this experiment wrote, per replicate.

        Unlike 0.27, the returned source carries this experiment as its producer, so an
        :class:`ExperimentGraph` infers the edge.
        """
        from crystallize.datasources.paths import ArtifactPathSource

        return ArtifactPathSource(self, step=step, name=name, condition=condition, require_metadata=require_metadata)

    def __repr__(self) -> str:
        return f"Experiment(name={self.name!r}, replicates={self.replicates}, treatments={[t.name for t in self.treatments]})"


def _outside_event_loop(fn: Any) -> Any:
    """Call ``fn`` here, or in a worker thread when an event loop is running (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()
