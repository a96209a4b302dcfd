"""Turns job results into store files and run-record entries, as they arrive."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from crystallize.execution.events import ConditionFinished, EventSink, ReplicateFinished
from crystallize.execution.job import JobError, JobResult
from crystallize.fingerprint.content import CONTENT_HASH
from crystallize.graph.settings import ConditionInputs
from crystallize.graph.plan import ConditionPlan
from crystallize.store.layout import ExperimentStore
from crystallize.store.record import ConditionOutcome, ConditionRecord
from crystallize.store.stored import StoredReplicate
from crystallize.store.writer import VersionWriter

__all__ = ["Collector", "ConditionRun"]

_NO_FILES: dict[str, tuple[str, str]] = {}  # shared by every replicate that wrote no artifact; never mutated


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
        results, kept = self.results, self.kept
        out: list[dict[str, list[Any]] | None] = []
        for rep in range(self.replicates):
            res = results.get(rep)
            if res is not None:
                out.append(res.metrics)
            else:
                stored = kept.get(rep)
                out.append(stored.metrics if stored is not None else None)
        return out

    def errors(self) -> dict[int, JobError]:
        return {r: res.error for r, res in self.results.items() if res.error is not None}

    def outcome(self) -> ConditionOutcome:
        if any(res.error is not None for res in self.results.values()):
            return ConditionOutcome.FAILED
        present = len(self.kept.keys() | self.results.keys())  # every result here succeeded
        return ConditionOutcome.COMPLETE if present >= self.replicates else ConditionOutcome.INCOMPLETE

    def record(self, version: int) -> ConditionRecord:
        """This condition's ``run.json`` entry: one pass over the replicates."""
        seeds: list[int | None] = []
        tags: list[dict[str, list[Any]] | None] = []
        metrics: list[dict[str, list[Any]] | None] = []
        artifacts: dict[str, dict[str, Any]] = {}
        results, kept, written = self.results, self.kept, self.written
        for rep in range(self.replicates):
            res = results.get(rep)
            if res is not None:
                seeds.append(res.seed)
                tags.append(res.tags)
                metrics.append(res.metrics)
                files = written.get(rep)
            else:
                stored = kept.get(rep)
                seeds.append(stored.seed if stored else None)
                tags.append(stored.tags if stored else None)
                metrics.append(stored.metrics if stored else None)
                files = stored.artifacts if stored else None
            if files:
                for name, (step, digest) in files.items():
                    artifacts.setdefault(name, {"step": step, CONTENT_HASH: {}})[CONTENT_HASH][str(rep)] = digest
        return ConditionRecord(
            version=version, outcome=self.outcome(), replicates=self.replicates, seeds=seeds, metrics=metrics,
            tags=tags, errors={str(r): e.to_json() for r, e in self.errors().items()}, artifacts=artifacts,
            upstream=self.inputs.pins, fingerprint=self.plan.fingerprint, inputs=self.plan.parts)


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
        writer.describe = self._journal_entry  # the journal buffers replicate numbers, not entries

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
        error = result.error
        written = self.writer.persist_artifacts(result.condition, result.replicate, result.artifacts) \
            if result.artifacts and error is None else _NO_FILES
        if error is None:
            run.written[result.replicate] = written
        run.results[result.replicate] = result
        self.writer.journal(result.condition, result.replicate)
        if self.on_event:
            self.on_event(ReplicateFinished(self.experiment, result.condition, result.replicate, result.ok))
        if run.done:
            self._finish(result.condition, run)

    def _journal_entry(self, condition: str, replicate: int) -> dict[str, Any]:
        run = self.runs[condition]
        result = run.results[replicate]
        return {"replicate": replicate, "seed": result.seed, "metrics": result.metrics, "tags": result.tags,
                "artifacts": run.written.get(replicate, _NO_FILES),
                "error": result.error.to_json() if result.error is not None else None}

    def finish_idle(self) -> None:
        """Finalise the conditions that wait for no job (their replicates are all stored)."""
        for name, run in self.runs.items():
            if not run.plan.run:
                self._finish(name, run)

    @property
    def finished(self) -> bool:
        """Every condition has all the results it waits for."""
        return all(run.done for run in self.runs.values())

    def _finish(self, name: str, run: ConditionRun) -> None:
        # a run long enough to have a journal brings it up to date before the marker, so a
        # crash now does not redo this condition's last replicates; a short run writes none
        self.writer.flush_if_started()
        self.writer.write_results(name, flatten(run.metrics_by_replicate()))
        complete = run.outcome() is ConditionOutcome.COMPLETE
        if complete:
            self.writer.mark_complete(name)  # last: only now does the condition look complete
        if self.on_event:
            self.on_event(ConditionFinished(self.experiment, name, complete))
