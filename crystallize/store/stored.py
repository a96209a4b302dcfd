"""A condition's stored replicates, read from ``run.json`` or, after a crash, from its journal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crystallize.fingerprint.content import CONTENT_HASH
from crystallize.store.layout import ExperimentStore
from crystallize.store.reader import read_journal
from crystallize.store.record import ConditionOutcome, ConditionRecord

__all__ = ["StoredCondition", "StoredReplicate", "stored_condition"]


@dataclass(frozen=True, slots=True)
class StoredReplicate:
    """One finished, successful replicate kept in the store."""

    seed: int | None
    metrics: dict[str, list[Any]]
    tags: dict[str, list[Any]] | None
    artifacts: dict[str, tuple[str, str]]  # file -> (step, sha256)


@dataclass(frozen=True, slots=True)
class StoredCondition:
    """What is on disk for one condition of one version."""

    record: ConditionRecord
    ok: dict[int, StoredReplicate] = field(default_factory=dict)  # successful replicates by index

    @property
    def version(self) -> int:
        return self.record.version

    def missing(self, replicates: int) -> tuple[int, ...]:
        """Replicate indices below ``replicates`` without a successful stored result."""
        return tuple(r for r in range(replicates) if r not in self.ok)


def _present(store: ExperimentStore, record: ConditionRecord, name: str, rep: int,
             arts: dict[str, tuple[str, str]]) -> bool:
    """Every artifact file of one replicate is still on disk (someone may have deleted it)."""
    return all(store.artifact(record.version, rep, name, step, file).is_file() for file, (step, _) in arts.items())


def _from_record(store: ExperimentStore, record: ConditionRecord, name: str) -> dict[int, StoredReplicate]:
    """Successful replicates listed in ``run.json`` whose artifact files all still exist."""
    ok: dict[int, StoredReplicate] = {}
    for rep, metrics in enumerate(record.metrics):
        if metrics is None or str(rep) in record.errors:
            continue
        arts = {file: (info["step"], info[CONTENT_HASH][str(rep)])
                for file, info in record.artifacts.items() if str(rep) in info.get(CONTENT_HASH, {})}
        if not _present(store, record, name, rep, arts):
            continue
        seed = record.seeds[rep] if rep < len(record.seeds) else None
        tags = record.tags[rep] if rep < len(record.tags) else None
        ok[rep] = StoredReplicate(seed, metrics, tags, arts)
    return ok


def _from_journal(store: ExperimentStore, record: ConditionRecord, name: str) -> dict[int, StoredReplicate]:
    """Replicates the journal says finished and whose artifact files are all still on disk.

    Only used for conditions without a completion marker (a killed run, or files pruned by
    retention), so checking that the files exist costs nothing on the common path.
    """
    ok: dict[int, StoredReplicate] = {}
    for entry in read_journal(store, record.version, name):
        if entry.get("error") is None and "metrics" in entry:
            rep = int(entry["replicate"])
            arts = {k: (v[0], v[1]) for k, v in entry.get("artifacts", {}).items()}
            if _present(store, record, name, rep, arts):
                ok[rep] = StoredReplicate(entry.get("seed"), entry["metrics"], entry.get("tags"), arts)
            else:
                ok.pop(rep, None)
    return ok


def stored_condition(store: ExperimentStore, name: str, record: ConditionRecord) -> StoredCondition:
    """Successful replicates of a stored condition; incomplete ones are recovered from the
    replicates their run record kept and from their journal.

    A complete condition whose marker or ``results.json`` is gone (pruned by retention, or
    deleted by hand) keeps no replicates, so it reads INCOMPLETE and reruns, never FRESH.
    A replicate whose artifact files are missing is not kept either, so it reruns.
    """
    if record.outcome is ConditionOutcome.COMPLETE:
        if not (store.marker(record.version, name).exists() and store.results(record.version, name).exists()):
            return StoredCondition(record)
        return StoredCondition(record, _from_record(store, record, name))
    if record.outcome is ConditionOutcome.FAILED:
        return StoredCondition(record, _from_record(store, record, name))
    if record.outcome is ConditionOutcome.INCOMPLETE:  # kept replicates in the record, new ones in the journal
        return StoredCondition(record, {**_from_record(store, record, name), **_from_journal(store, record, name)})
    return StoredCondition(record)
