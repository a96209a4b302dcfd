"""0.27 import path ``crystallize.utils.decorators`` (re-exports)."""

from crystallize.datasources.datasource import data_source
from crystallize.hypothesis import VerifierCallable, hypothesis, verifier
from crystallize.steps import ResourceFactoryWrapper, inject_from_ctx, pipeline, pipeline_step, resource_factory
from crystallize.treatments import treatment
from crystallize.utils.constants import (
    BASELINE_CONDITION,
    CONDITION_KEY,
    METADATA_FILENAME,
    REPLICATE_KEY,
    SEED_USED_KEY,
)

__all__ = ["BASELINE_CONDITION", "CONDITION_KEY", "METADATA_FILENAME", "REPLICATE_KEY", "SEED_USED_KEY",
           "ResourceFactoryWrapper", "VerifierCallable", "data_source", "hypothesis", "inject_from_ctx", "pipeline",
           "pipeline_step", "resource_factory", "treatment", "verifier"]
