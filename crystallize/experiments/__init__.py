"""0.27 import path ``crystallize.experiments`` (re-exports)."""

from crystallize.experiment import Experiment
from crystallize.graph.model import ExperimentGraph
from crystallize.hypothesis import Hypothesis, HypothesisResult
from crystallize.optimizers import BaseOptimizer, Objective
from crystallize.results import (
    AggregateData,
    ExperimentMetrics,
    ReplicateResult,
    Result,
    TreatmentMetrics,
)
from crystallize.treatments import Treatment

__all__ = ["AggregateData", "BaseOptimizer", "Experiment", "ExperimentGraph", "ExperimentMetrics", "Hypothesis",
           "HypothesisResult", "Objective", "ReplicateResult", "Result", "Treatment", "TreatmentMetrics"]
