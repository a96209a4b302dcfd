"""Reads the store: run records, stored metrics (0.27's ``load_metrics``), seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crystallize.names import BASELINE
from crystallize.store.layout import MARKER, ExperimentStore, list_versions
from crystallize.store.record import ConditionOutcome, ConditionRecord, RunRecord

__all__ = ["OlderRecords", "latest_record", "load_all_metrics", "load_metrics", "read_journal"]


def latest_record(store: ExperimentStore) -> RunRecord | None:
    """The newest readable ``run.json`` of an experiment (any status), or ``None``."""
    for version in reversed(store.versions()):
        record = RunRecord.load(store.run_json(version))
        if record is not None:
            return record
    return None


class OlderRecords:
    """The run records of versions below ``below``, newest first, each read at most once.

    Resume reuses a condition whose fingerprint matches *a* complete stored condition
    (spec §4), not only one the newest record maps: after an edit is reverted, or a
    forced rerun is killed, an older version may still hold exactly what is wanted.
    """

    def __init__(self, store: ExperimentStore, below: int) -> None:
        self._store = store
        self._versions = [v for v in reversed(store.versions()) if v < below]
        self._read: list[RunRecord] = []

    def _records(self) -> Any:
        yield from self._read
        while self._versions:
            record = RunRecord.load(self._store.run_json(self._versions.pop(0)))
            if record is not None:
                self._read.append(record)
                yield record

    def complete(self, condition: str, fingerprint: str, master_seed: int) -> ConditionRecord | None:
        """The newest stored record of ``condition`` that completed with ``fingerprint`` in a
        run with ``master_seed`` (a drawn seed is not part of the fingerprint, and every
        condition of one run must share the replicate seeds)."""
        for record in self._records():
            held = record.conditions.get(condition)
            if held is not None and held.outcome is ConditionOutcome.COMPLETE and held.fingerprint == fingerprint \
                    and record.master_seed == master_seed:
                return held
        return None


def read_journal(store: ExperimentStore, version: int, condition: str) -> list[dict[str, Any]]:
    """Per-replicate entries of a condition's journal, in the order written.

    Each line is one flushed batch (a JSON array of entries) or, as written before
    batching, one entry. A torn last line (a run killed mid-write) is ignored.
    """
    path = store.journal(version, condition)
    if not path.exists():
        return []
    entries: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            batch = json.loads(line)
        except ValueError:
            continue
        entries.extend(batch if isinstance(batch, list) else [batch])
    return entries


def _read_results(path: Path) -> dict[str, list[Any]]:
    try:
        return dict(json.loads(path.read_text()).get("metrics", {}))
    except (OSError, ValueError):
        return {}


def _folder_metrics(vdir: Path) -> dict[str, dict[str, list[Any]]]:
    """Condition -> metrics of every complete condition folder of one version (0.27's walk)."""
    if not vdir.is_dir():
        return {}
    found: dict[str, dict[str, list[Any]]] = {}
    for cond_dir in sorted(p for p in vdir.iterdir() if p.is_dir() and not p.name.startswith("replicate_")):
        if (cond_dir / "results.json").exists() and (cond_dir / MARKER).exists():
            found[cond_dir.name] = _read_results(cond_dir / "results.json")
    return found


def _mapped_metrics(exp_dir: Path, record: RunRecord) -> dict[str, tuple[int, dict[str, list[Any]]]]:
    """Condition -> (version, metrics) of every active condition of ``record``, read from the
    version its ``run.json`` maps it to (complete conditions only: marker present)."""
    found: dict[str, tuple[int, dict[str, list[Any]]]] = {}
    for name, condition in record.conditions.items():
        cond_dir = exp_dir / f"v{condition.version}" / name
        if condition.version >= 0 and (cond_dir / MARKER).exists() and (cond_dir / "results.json").exists():
            found[name] = (condition.version, _read_results(cond_dir / "results.json"))
    return found


def _record(exp_dir: Path, versions: list[int], version: int | None) -> RunRecord | None:
    """``run.json`` of ``version``, or with no version the newest readable one."""
    for v in reversed(versions) if version is None else (version,):
        record = RunRecord.load(exp_dir / f"v{v}" / "run.json")
        if record is not None:
            return record
    return None


def _stored(exp_dir: Path, version: int | None) -> tuple[int, dict[str, tuple[int, dict[str, list[Any]]]]] | None:
    """The version read and condition -> (version holding it, metrics); ``None`` without versions."""
    versions = list_versions(exp_dir)
    if not versions:
        return None
    record = _record(exp_dir, versions, version)
    if record is not None:
        return record.version, _mapped_metrics(exp_dir, record)
    version = versions[-1] if version is None else version
    return version, {name: (version, m) for name, m in _folder_metrics(exp_dir / f"v{version}").items()}


def load_metrics(exp_dir: str | Path, version: int | None = None) -> tuple[int, dict[str, list[Any]], dict[str, dict[str, list[Any]]]]:
    """Stored metrics of the experiment as of one run (default: the newest).

    Conditions resolve through that run's ``run.json``, which maps every active condition
    to the version holding it: after a resume that ran only some conditions, the baseline
    and the reused treatments come from the older versions they live in. A version
    without ``run.json`` (a 0.27 store) is read folder by folder, as 0.27 did.

    Parameters
    ----------
    exp_dir : str or Path
        The experiment's folder, ``<root>/<experiment name>``.
    version : int, optional
        The run to read (``v<version>``); default: the newest with a readable ``run.json``.

    Returns
    -------
    tuple
        ``(version, baseline metrics, {treatment: metrics})``; ``(-1, {}, {})`` when the
        experiment has no version. Only complete conditions (marker present) are read.
    """
    stored = _stored(Path(exp_dir), version)
    if stored is None:
        return -1, {}, {}
    latest, found = stored
    baseline = found.pop(BASELINE, (latest, {}))[1]
    return latest, baseline, {name: metrics for name, (_, metrics) in found.items()}


def load_all_metrics(exp_dir: str | Path, version: int | None = None) -> tuple[int, dict[str, list[Any]], dict[str, tuple[int, dict[str, list[Any]]]]]:
    """Metrics of every treatment ever stored up to one run (default: the newest).

    The active conditions of that run resolve through its ``run.json`` (as in
    :func:`load_metrics`); treatments it does not use any more come from the newest
    version folder holding them, as in 0.27.

    Returns
    -------
    tuple
        ``(latest version, baseline metrics, {treatment: (version, metrics)})``;
        ``(-1, {}, {})`` when the experiment has no version.
    """
    exp_dir = Path(exp_dir)
    stored = _stored(exp_dir, version)
    if stored is None:
        return -1, {}, {}
    latest, found = stored
    baseline = found.pop(BASELINE, (latest, {}))[1]
    for v in reversed([v for v in list_versions(exp_dir) if v <= latest]):
        for name, metrics in _folder_metrics(exp_dir / f"v{v}").items():
            if name != BASELINE:
                found.setdefault(name, (v, metrics))
    return latest, baseline, found
