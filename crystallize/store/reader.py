"""Reads the store: run records, stored metrics (0.27's ``load_metrics``), seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crystallize.store.layout import MARKER, ExperimentStore, list_versions
from crystallize.store.record import RunRecord

__all__ = ["latest_record", "load_all_metrics", "load_metrics", "read_journal"]


def latest_record(store: ExperimentStore) -> RunRecord | None:
    """The newest readable ``run.json`` of an experiment (any status), or ``None``."""
    for version in reversed(store.versions()):
        record = RunRecord.load(store.run_json(version))
        if record is not None:
            return record
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


def load_metrics(exp_dir: str | Path, version: int | None = None) -> tuple[int, dict[str, list[Any]], dict[str, dict[str, list[Any]]]]:
    """Stored metrics of one version (default: the newest).

    Returns
    -------
    tuple
        ``(version, baseline metrics, {treatment: metrics})``; ``(-1, {}, {})`` when the
        experiment has no version. Only complete conditions (marker present) are read.
    """
    exp_dir = Path(exp_dir)
    versions = list_versions(exp_dir)
    if not versions:
        return -1, {}, {}
    version = versions[-1] if version is None else version
    vdir = exp_dir / f"v{version}"
    baseline: dict[str, list[Any]] = {}
    treatments: dict[str, dict[str, list[Any]]] = {}
    for cond_dir in sorted(p for p in vdir.iterdir() if p.is_dir() and not p.name.startswith("replicate_")):
        if not (cond_dir / "results.json").exists() or not (cond_dir / MARKER).exists():
            continue
        metrics = _read_results(cond_dir / "results.json")
        if cond_dir.name == "baseline":
            baseline = metrics
        else:
            treatments[cond_dir.name] = metrics
    return version, baseline, treatments


def load_all_metrics(exp_dir: str | Path, version: int | None = None) -> tuple[int, dict[str, list[Any]], dict[str, tuple[int, dict[str, list[Any]]]]]:
    """Metrics of every treatment ever stored, each from the newest version holding it.

    Returns
    -------
    tuple
        ``(latest version, baseline metrics of that version, {treatment: (version, metrics)})``.
    """
    exp_dir = Path(exp_dir)
    versions = [v for v in list_versions(exp_dir) if version is None or v <= version]
    if not versions:
        return -1, {}, {}
    latest, baseline, _ = load_metrics(exp_dir, versions[-1])
    found: dict[str, tuple[int, dict[str, list[Any]]]] = {}
    for v in reversed(versions):
        for name, metrics in load_metrics(exp_dir, v)[2].items():
            found.setdefault(name, (v, metrics))
    return latest, baseline, found
