"""Version retention (0.27 rules), never touching versions the newest run record still uses."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from crystallize.store.layout import ExperimentStore
from crystallize.store.reader import latest_record

__all__ = ["prune_versions"]

logger = logging.getLogger(__name__)
_KEEP_FILES = {"results.json", "_manifest.json", "metadata.json", "run.json"}


def _protected(store: ExperimentStore) -> set[int]:
    """Versions the newest run record holds conditions in, or that a downstream
    experiment in the same store root pins in its newest run record."""
    record = latest_record(store)
    keep = set() if record is None else {record.version} | {c.version for c in record.conditions.values()}
    if store.root.is_dir():
        for folder in store.root.iterdir():
            if folder.name == store.name or folder.name.startswith(".") or not folder.is_dir():
                continue
            downstream = latest_record(ExperimentStore(store.root, folder.name))
            for condition in downstream.conditions.values() if downstream else ():
                keep.update(p.version for p in condition.upstream if p.producer == store.name)
    return {v for v in keep if v >= 0}


def prune_versions(store: ExperimentStore, *, keep: int, big_file_mb: float) -> None:
    """Apply retention after a versioned run.

    The newest ``keep`` versions stay whole, except that files larger than ``big_file_mb``
    MB are removed from all of them but the newest. Older versions keep only their
    ``results.json`` and ``run.json`` (markers go first, so they never read as complete).
    Versions referenced by the newest ``run.json`` are left untouched.
    """
    versions = store.versions()
    if keep <= 0 or len(versions) <= 1:
        return
    # Only versions not pruned yet (stripping removes metadata.json) are candidates, so the
    # downstream scan in _protected runs only when there is something to decide.
    candidates = [v for v in versions[:-1] if store.metadata(v).exists()]
    if not candidates:
        return
    protected = _protected(store)
    old = set(versions[:-keep])
    for version in candidates:
        if version in old and version not in protected:
            _strip(store.version_dir(version), {"results.json", "run.json"})
    limit = big_file_mb * 1024 * 1024
    for version in candidates:
        if version in old or version in protected:
            continue
        vdir = store.version_dir(version)
        for path in vdir.rglob("*"):
            if path.is_file() and path.name not in _KEEP_FILES and path.stat().st_size > limit:
                parts = path.relative_to(vdir).parts
                if len(parts) > 2 and parts[0].startswith("replicate_"):
                    store.marker(version, parts[1]).unlink(missing_ok=True)  # no longer complete
                path.unlink()


def _strip(vdir: Path, keep: set[str]) -> None:
    for marker in vdir.rglob(".crystallize_complete"):
        marker.unlink()
    for path in sorted(vdir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file() and path.name not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            shutil.rmtree(path, ignore_errors=True)
    logger.debug("pruned %s", vdir)
