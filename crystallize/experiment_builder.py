"""Fluent construction of an :class:`Experiment`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crystallize.steps import Pipeline, PipelineStep

if TYPE_CHECKING:
    from crystallize.datasources.artifacts import Artifact
    from crystallize.datasources.datasource import DataSource
    from crystallize.experiment import Experiment
    from crystallize.plugins.base import BasePlugin
    from crystallize.treatments import Treatment

__all__ = ["ExperimentBuilder"]


class ExperimentBuilder:
    """Collects settings with chained calls; :meth:`build` validates and copies them."""

    def __init__(self, name: str | None = None) -> None:
        self._name = name
        self._kwargs: dict[str, Any] = {}
        self._steps: list[PipelineStep] = []
        self._pipeline: Pipeline | None = None
        self._datasource: DataSource | None = None

    def datasource(self, source: DataSource) -> ExperimentBuilder:
        self._datasource = source
        return self

    def pipeline(self, pipeline: Pipeline) -> ExperimentBuilder:
        self._pipeline = pipeline
        return self

    def add_step(self, step: PipelineStep) -> ExperimentBuilder:
        self._steps.append(step)
        return self

    def plugins(self, plugins: Sequence[BasePlugin]) -> ExperimentBuilder:
        self._kwargs["plugins"] = list(plugins)
        return self

    def treatments(self, treatments: Sequence[Treatment]) -> ExperimentBuilder:
        self._kwargs["treatments"] = list(treatments)
        return self

    def hypotheses(self, hypotheses: Sequence[Any]) -> ExperimentBuilder:
        self._kwargs["hypotheses"] = list(hypotheses)
        return self

    def replicates(self, replicates: int) -> ExperimentBuilder:
        self._kwargs["replicates"] = replicates
        return self

    def description(self, text: str) -> ExperimentBuilder:
        self._kwargs["description"] = text
        return self

    def initial_ctx(self, ctx: Mapping[str, Any]) -> ExperimentBuilder:
        self._kwargs["initial_ctx"] = dict(ctx)
        return self

    def outputs(self, outputs: Sequence[Artifact]) -> ExperimentBuilder:
        self._kwargs["outputs"] = list(outputs)
        return self

    def build(self) -> Experiment:
        """Build the experiment.

        Raises
        ------
        ValueError
            ``"datasource must be provided"`` when no datasource was set.
        """
        from crystallize.experiment import Experiment

        if self._datasource is None:
            raise ValueError("datasource must be provided")
        pipeline = self._pipeline if self._pipeline is not None else Pipeline(list(self._steps))
        return Experiment(self._datasource, pipeline, name=self._name, **self._kwargs)
