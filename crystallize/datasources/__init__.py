"""Data sources and artifacts (also the 0.27 import path ``crystallize.datasources``)."""

from crystallize.datasources.artifacts import Artifact, ArtifactLog
from crystallize.datasources.datasource import DataSource, ExperimentInput, MultiArtifactDataSource

__all__ = ["Artifact", "ArtifactLog", "DataSource", "ExperimentInput", "MultiArtifactDataSource"]
