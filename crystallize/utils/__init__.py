"""0.27 import path ``crystallize.utils`` (re-exports)."""

from crystallize.context import FrozenContext, LoggingContext
from crystallize.errors import ContextMutationError, MissingMetricError, PipelineExecutionError, ValidationError
from crystallize.steps import inject_from_ctx
from crystallize.utils.cache import compute_hash, load_cache, store_cache

__all__ = ["ContextMutationError", "FrozenContext", "LoggingContext", "MissingMetricError", "PipelineExecutionError",
           "ValidationError", "compute_hash", "inject_from_ctx", "load_cache", "store_cache"]
