"""Path-based chaining: a source yielding the path of a file another experiment wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystallize.context import FrozenContext
from crystallize.datasources.artifacts import Artifact
from crystallize.datasources.datasource import DataSource
from crystallize.names import validate_name

if TYPE_CHECKING:
    from crystallize.experiment import Experiment

__all__ = ["ArtifactPathSource"]


class ArtifactPathSource(DataSource):
    """Yields ``Path`` objects to ``<producer>/v<N>/replicate_<r>/<condition>/<step>/<name>``.

    The version is the one pinned for this run (inside a graph) or the producer's newest
    complete run. Unlike crystallize-ml 0.27 the source names its producer, so graphs
    infer the edge, and a missing file raises ``FileNotFoundError`` naming the path.
    """

    def __init__(self, producer: Experiment, *, step: str, name: str, condition: str, require_metadata: bool) -> None:
        self.producer, self.step = producer, validate_name(step, what="step")
        self.name, self.condition = validate_name(name, what="artifact"), condition
        self.require_metadata = require_metadata
        self.artifact = Artifact(name)
        self.artifact.producer_name = producer.store_name
        self.artifact._producer = producer  # type: ignore[attr-defined]
        self.required_outputs = [self.artifact]

    @property
    def replicates(self) -> int | None:  # type: ignore[override]
        from crystallize.plugins.builtin import ArtifactPlugin
        from crystallize.store.layout import ExperimentStore

        plugin = self.producer.get_plugin(ArtifactPlugin) or ArtifactPlugin()
        store = ExperimentStore(plugin.root_dir, self.producer.store_name)
        versions = store.versions()
        meta = store.metadata(versions[-1]) if versions else None
        if meta is None or not meta.exists():
            if self.require_metadata:
                raise FileNotFoundError(f"metadata.json of '{self.producer.store_name}' not found under {store.dir}")
            return None
        return int(json.loads(meta.read_text())["replicates"])

    def fetch(self, ctx: FrozenContext) -> Path:
        pinned = ctx._inputs.get(self.artifact.key)
        root = Path(pinned.version_dir) if pinned is not None else self._newest_version_dir()
        if root is None:
            raise FileNotFoundError(f"no run of '{self.artifact.producer_name}' is available for '{self.name}'")
        path = root / f"replicate_{int(ctx.get('replicate', 0))}" / self.condition / self.step / self.name
        if not path.exists():
            raise FileNotFoundError(f"artifact not found: {path}")
        return path

    def _newest_version_dir(self) -> Path | None:
        """Outside a run (0.27's ``paths.fetch(ctx)``): the version holding the producer's newest
        complete ``condition``; ``None`` when there is none (or in a worker, without the producer)."""
        from crystallize.plugins.builtin import ArtifactPlugin
        from crystallize.store.layout import ExperimentStore
        from crystallize.store.reader import latest_record
        from crystallize.store.record import ConditionOutcome

        if self.producer is None:
            return None
        plugin = self.producer.get_plugin(ArtifactPlugin) or ArtifactPlugin()
        store = ExperimentStore(plugin.root_dir, self.producer.store_name)
        record = latest_record(store)
        entry = record.conditions.get(self.condition) if record is not None else None
        if entry is None or entry.outcome is not ConditionOutcome.COMPLETE:
            return None
        return store.version_dir(entry.version)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["producer"] = None  # the runner pins inputs; workers never need the producer
        return state
