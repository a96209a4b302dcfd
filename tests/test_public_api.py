"""Pins the public surface: ``crystallize.__all__`` (0.27's list) and 0.27 submodule paths."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import crystallize

ALL_027 = [
    "standalone_context", "quick_experiment", "get_datasource", "list_datasources", "register_datasource",
    "pipeline_step", "inject_from_ctx", "treatment", "hypothesis", "data_source", "verifier", "pipeline",
    "resource_factory", "PipelineStep", "Pipeline", "Hypothesis", "Experiment", "DataSource", "FrozenContext",
    "Treatment", "BasePlugin", "SerialExecution", "ParallelExecution", "AsyncExecution", "SeedPlugin",
    "LoggingPlugin", "ArtifactPlugin", "ExperimentGraph", "Artifact", "ExperimentInput", "ExperimentBuilder",
]

# spec section 2 / reference-0.27 section 0: submodule -> names users import from it
SUBMODULES = {
    "crystallize.utils.exceptions": ["CrystallizeError", "ContextMutationError", "MissingMetricError",
                                     "PipelineExecutionError", "ValidationError"],
    "crystallize.utils": ["FrozenContext", "ContextMutationError", "LoggingContext", "MissingMetricError",
                          "PipelineExecutionError", "ValidationError", "compute_hash", "load_cache", "store_cache",
                          "inject_from_ctx"],
    "crystallize.plugins": ["ArtifactPlugin", "BasePlugin", "LoggingPlugin", "SeedPlugin", "SerialExecution",
                            "ParallelExecution", "AsyncExecution", "load_metrics", "load_all_metrics"],
    "crystallize.experiments": ["Experiment", "ExperimentGraph", "Hypothesis", "BaseOptimizer", "Objective", "Result",
                                "ExperimentMetrics", "TreatmentMetrics", "HypothesisResult", "AggregateData",
                                "ReplicateResult", "Treatment"],
    "crystallize.experiments.optimizers": ["BaseOptimizer", "Objective"],
    "crystallize.pipelines": ["Pipeline", "PipelineStep"],
    "crystallize.datasources": ["Artifact", "ArtifactLog", "DataSource", "ExperimentInput",
                                "MultiArtifactDataSource"],
    "crystallize.utils.decorators": ["METADATA_FILENAME", "BASELINE_CONDITION", "REPLICATE_KEY", "CONDITION_KEY",
                                     "SEED_USED_KEY", "ResourceFactoryWrapper", "VerifierCallable", "pipeline_step",
                                     "treatment", "hypothesis", "data_source", "verifier", "resource_factory"],
}


def test_all_is_exactly_the_027_list() -> None:
    assert crystallize.__all__ == ALL_027


@pytest.mark.parametrize("name", ALL_027)
def test_every_public_name_is_importable(name: str) -> None:
    assert getattr(crystallize, name) is not None


@pytest.mark.parametrize("module", sorted(SUBMODULES))
def test_027_submodule_paths_keep_working(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [n for n in SUBMODULES[module] if not hasattr(mod, n)]
    assert missing == []


def test_reexports_are_the_same_objects() -> None:
    from crystallize.experiments import Experiment, ExperimentGraph, Treatment
    from crystallize.pipelines import Pipeline, PipelineStep
    from crystallize.plugins import ParallelExecution, SeedPlugin
    from crystallize.utils import FrozenContext
    from crystallize.utils.exceptions import ContextMutationError, CrystallizeError

    assert Experiment is crystallize.Experiment and ExperimentGraph is crystallize.ExperimentGraph
    assert Treatment is crystallize.Treatment and Pipeline is crystallize.Pipeline
    assert PipelineStep is crystallize.PipelineStep and FrozenContext is crystallize.FrozenContext
    assert ParallelExecution is crystallize.ParallelExecution and SeedPlugin is crystallize.SeedPlugin
    assert issubclass(ContextMutationError, CrystallizeError)


def test_multi_artifact_alias_and_constants() -> None:
    from crystallize.datasources.datasource import ExperimentInput, MultiArtifactDataSource
    from crystallize.utils import decorators

    assert MultiArtifactDataSource is ExperimentInput
    assert (decorators.METADATA_FILENAME, decorators.BASELINE_CONDITION, decorators.REPLICATE_KEY,
            decorators.CONDITION_KEY, decorators.SEED_USED_KEY) == (
        "metadata.json", "baseline", "replicate", "condition", "seed_used")


def test_ray_execution_is_lazy_and_not_in_all() -> None:
    assert "RayExecution" not in crystallize.__all__
    code = "import sys, crystallize; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        crystallize.Nope  # noqa: B018
