"""0.27 import path ``crystallize.utils.exceptions`` (re-exports)."""

from crystallize.errors import (
    ContextMutationError,
    CrystallizeError,
    MissingMetricError,
    PipelineExecutionError,
    ValidationError,
)

__all__ = ["ContextMutationError", "CrystallizeError", "MissingMetricError", "PipelineExecutionError", "ValidationError"]
