"""Crystallize: reproducible experiments as a DAG.

Define experiments (a datasource, a pipeline of steps, a baseline plus treatments, run
for replicates, with hypotheses checked by statistics), wire them into an
:class:`ExperimentGraph`, and rerun only what is stale. The public names below are
those of crystallize-ml 0.27, so switching is a change of install line.
"""

from __future__ import annotations

from typing import Any

from crystallize.context import FrozenContext, standalone_context
from crystallize.datasources.artifacts import Artifact
from crystallize.datasources.datasource import DataSource, ExperimentInput, data_source
from crystallize.datasources.registry import get_datasource, list_datasources, register_datasource
from crystallize.execution.local import AsyncExecution, ParallelExecution, SerialExecution
from crystallize.experiment import Experiment
from crystallize.experiment_builder import ExperimentBuilder
from crystallize.graph.model import ExperimentGraph
from crystallize.hypothesis import Hypothesis, hypothesis, verifier
from crystallize.plugins.base import BasePlugin
from crystallize.plugins.builtin import ArtifactPlugin, LoggingPlugin, SeedPlugin
from crystallize.quick import quick_experiment
from crystallize.steps import Pipeline, PipelineStep, inject_from_ctx, pipeline, pipeline_step, resource_factory
from crystallize.treatments import Treatment, treatment

# Names the spec uses beyond 0.27's (status, errors): importable from here too, but kept out of
# __all__, which stays 0.27's list.
from crystallize.errors import (  # noqa: F401
    ArtifactNotFoundError, ConfigError, CrystallizeError, FingerprintError, RenderError, StatisticsError, StoreError,
)
from crystallize.graph.status import (  # noqa: F401
    ConditionStatus, GraphStatus, NodeState, NodeStatus, RunPlan, StaleKind, StaleReason,
)

__all__ = [
    "standalone_context",
    "quick_experiment",
    "get_datasource",
    "list_datasources",
    "register_datasource",
    "pipeline_step",
    "inject_from_ctx",
    "treatment",
    "hypothesis",
    "data_source",
    "verifier",
    "pipeline",
    "resource_factory",
    "PipelineStep",
    "Pipeline",
    "Hypothesis",
    "Experiment",
    "DataSource",
    "FrozenContext",
    "Treatment",
    "BasePlugin",
    "SerialExecution",
    "ParallelExecution",
    "AsyncExecution",
    "SeedPlugin",
    "LoggingPlugin",
    "ArtifactPlugin",
    "ExperimentGraph",
    "Artifact",
    "ExperimentInput",
    "ExperimentBuilder",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # RayExecution is importable from here without importing Ray at package import time.
    if name == "RayExecution":
        from crystallize.execution.ray import RayExecution

        return RayExecution
    raise AttributeError(f"module 'crystallize' has no attribute {name!r}")
