"""Turns job results into store files and run-record entries, as they arrive."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from crystallize.execution.events import ConditionFinished, EventSink, ReplicateFinished
from crystallize.execution.job import JobError, JobResult
from crystallize.graph.settings import ConditionInputs
from crystallize.graph.plan import ConditionPlan
from crystallize.store.layout import ExperimentStore
from crystallize.store.record import ConditionOutcome, ConditionRecord
from crystallize.store.stored import StoredReplicate
from crystallize.store.writer import VersionWriter

__all__ = ["Collector", "ConditionRun"]


@dataclass
class ConditionRun:
    """Replicates of one condition gathered during a run (kept ones plus new results)."""

    plan: ConditionPlan
    inputs: ConditionInputs
    replicates: int
    kept: dict[int, StoredReplicate] = field(default_factory=dict)
    results: dict[int, JobResult] = field(default_factory=dict)
    written: dict[int, dict[str, tuple[str, str]]] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.plan.run)

    def metrics_by_replicate(self) -> list[dict[str, list[Any]] | None]:
        out: list[dict[str, list[Any]] | None] = []
        for rep in range(self.replicates):
            if rep in self.results:
                out.append(self.results[rep].metrics)
            else:
                out.append(self.kept[rep].metrics if rep in self.kept else None)
        return out

    def errors(self) -> dict[int, JobError]:
        return {r: res.error for r, res in self.results.items() if res.error is not None}

    def outcome(self) -> ConditionOutcome:
        if self.errors():
            return ConditionOutcome.FAILED
        present = set(self.kept) | {r for r, res in self.results.items() if res.ok}
        return ConditionOutcome.COMPLETE if present >= set(range(self.replicates)) else ConditionOutcome.INCOMPLETE

    def record(self, version: int) -> ConditionRecord:
        seeds: list[int | None] = []
        tags: list[dict[str, list[Any]] | None] = []
        artifacts: dict[str, dict[str, Any]] = {}
        for rep in range(self.replicates):
            res, kept = self.results.get(rep), self.kept.get(rep)
            seeds.append(res.seed if res else (kept.seed if kept else None))
            tags.append(res.tags if res else (kept.tags if kept else None))
            files = self.written.get(rep) if res else (kept.artifacts if kept else {})
            for name, (step, sha) in (files or {}).items():
                artifacts.setdefault(name, {"step": step, "sha256": {}})["sha256"][str(rep)] = sha
        return ConditionRecord(
            version=version, outcome=self.outcome(), replicates=self.replicates, seeds=seeds,
            metrics=self.metrics_by_replicate(), tags=tags, errors={str(r): e.to_json() for r, e in self.errors().items()},
            artifacts=artifacts, upstream=self.inputs.pins, fingerprint=self.plan.fingerprint, inputs=self.plan.parts)


def flatten(per_replicate: Sequence[dict[str, list[Any]] | None]) -> dict[str, list[Any]]:
    """Metric lists across replicates, in replicate order (failed replicates contribute nothing)."""
    merged: dict[str, list[Any]] = {}
    for metrics in per_replicate:
        for key, values in (metrics or {}).items():
            merged.setdefault(key, []).extend(values)
    return merged


def _link(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
    """Hard-link (or copy) a kept replicate's file into the new version."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class Collector:
    """Persists each job result as it arrives and finalises conditions when their last replicate returns."""

    def __init__(self, experiment: str, writer: VersionWriter, runs: dict[str, ConditionRun],
                 on_event: EventSink | None) -> None:
        self.experiment, self.writer, self.runs, self.on_event = experiment, writer, runs, on_event

    def carry_over(self, store: ExperimentStore) -> None:
        """Bring kept replicates' artifacts from an older version into this one."""
        version = self.writer.version
        for name, run in self.runs.items():
            for rep, kept in run.kept.items():
                source = run.plan.reuse.version if run.plan.reuse else version
                if source == version:
                    continue
                for file, (step, _sha) in kept.artifacts.items():
                    _link(store.artifact(source, rep, name, step, file), store.artifact(version, rep, name, step, file))
                    self.writer.manifest[file] = step

    def add(self, result: JobResult) -> None:
        run = self.runs[result.condition]
        if result.ok:
            run.written[result.replicate] = self.writer.persist_artifacts(
                result.condition, result.replicate, result.artifacts)
        run.results[result.replicate] = result
        self.writer.journal(result.condition, {
            "replicate": result.replicate, "seed": result.seed, "metrics": result.metrics, "tags": result.tags,
            "artifacts": run.written.get(result.replicate, {}), "error": result.error.to_json() if result.error else None})
        if self.on_event:
            self.on_event(ReplicateFinished(self.experiment, result.condition, result.replicate, result.ok))
        if run.done:
            self._finish(result.condition, run)

    @property
    def finished(self) -> bool:
        """Every condition has all the results it waits for."""
        return all(run.done for run in self.runs.values())

    def _finish(self, name: str, run: ConditionRun) -> None:
        # no journal flush here: the journal only saves work after a crash, and the writer
        # already flushes it every batch or second; a marker never depends on it
        self.writer.write_results(name, flatten(run.metrics_by_replicate()))
        complete = run.outcome() is ConditionOutcome.COMPLETE
        if complete:
            self.writer.mark_complete(name)  # last: only now does the condition look complete
        if self.on_event:
            self.on_event(ConditionFinished(self.experiment, name, complete))
