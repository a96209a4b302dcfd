"""0.27 import path ``crystallize.pipelines`` (re-exports)."""

from crystallize.steps import Pipeline, PipelineStep

__all__ = ["Pipeline", "PipelineStep"]
