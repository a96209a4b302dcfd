"""Writes one version folder. Only the runner calls this; jobs never touch the store."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystallize.datasources.artifacts import clean_staged, sweep_staging
from crystallize.fingerprint.content import digest_while, file_digest
from crystallize.store.atomic import create_empty, json_text, move_into_place, write_bytes, write_json, write_new_bytes
from crystallize.store.layout import ExperimentStore

if TYPE_CHECKING:
    from crystallize.datasources.artifacts import ArtifactRecord
    from crystallize.store.record import RunRecord

__all__ = ["VersionWriter"]

_JOURNAL_SECONDS = 1.0  # buffered entries reach the journal this often: a crash loses at most that much work


def _torn(path: Path) -> bool:
    """The file exists and does not end with a newline (its last line was cut short)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except FileNotFoundError:
        return False


class VersionWriter:
    """Persists job outputs into ``<store>/v<version>``.

    Every file goes through a temporary name and ``os.replace``; completion markers are
    written last and only by :meth:`mark_complete`, so a killed run never leaves a
    condition that looks complete. Made when a run starts, it first removes the staging
    folders that processes now gone left in the store (:func:`sweep_staging`).
    """

    def __init__(self, store: ExperimentStore, version: int, *, durable: bool = False) -> None:
        self.store, self.version, self.durable = store, version, durable
        sweep_staging(store.staging_dir)  # a run starts: drop what killed or crashed runs staged
        self.manifest: dict[str, str] = {}
        # builds a journal entry from what journal() was given, when it is flushed (see journal())
        self.describe: Callable[[str, Any], Mapping[str, Any]] | None = None
        self._journal: dict[str, list[Any]] = {}
        self._last_flush = time.monotonic()
        self._flushed = False  # any journal line on disk yet?
        self._appended: set[str] = set()  # conditions whose journal this writer appended to

    def persist_artifacts(self, condition: str, replicate: int,
                          records: Iterable[ArtifactRecord]) -> dict[str, tuple[str, str]]:
        """Write one job's artifact files; returns ``{file: (step, content digest)}``."""
        written: dict[str, tuple[str, str]] = {}
        for rec in records:
            step = rec.step_name or "_unknown_step"
            path = self.store.artifact(self.version, replicate, condition, step, rec.name)
            if rec.data is not None:
                digest = digest_while(rec.data, lambda data=rec.data, path=path: write_new_bytes(
                    path, data, durable=self.durable))
            else:
                assert rec.staged is not None
                digest = file_digest(rec.staged, mapped=True)  # staged files are the run's own
                move_into_place(rec.staged, path, durable=self.durable)
                clean_staged(rec.staged)  # its staging folder, once empty
            self.manifest[rec.name] = step
            written[rec.name] = (step, digest)
        return written

    def journal(self, condition: str, entry: Any) -> None:
        """Buffer one replicate's outcome; flushed once a second at most (append-only file).

        ``entry`` is the JSON-ready mapping, or, when :attr:`describe` is set, what
        ``describe(condition, entry)`` turns into one at flush time (so a run that never
        flushes builds no entries). Either must not change before it is flushed.
        """
        entries = self._journal.setdefault(condition, [])
        entries.append(entry)
        if time.monotonic() - self._last_flush > _JOURNAL_SECONDS:
            self.flush()

    def flush_if_started(self) -> None:
        """Flush now if any journal line was written already (a short run's buffer stays put)."""
        if self._flushed:
            self.flush()

    def flush_due_in(self) -> float | None:
        """Seconds until buffered entries are due on disk (0 when overdue); ``None`` when none wait."""
        if not any(self._journal.values()):
            return None
        return max(0.0, self._last_flush + _JOURNAL_SECONDS - time.monotonic())

    def flush(self, *, final: bool = False) -> None:
        """Append buffered entries to each condition's ``.journal.jsonl``: one line per batch,
        a JSON array of entries (one encoder call per batch, not per replicate).

        ``final=True`` means the run has every result and its final ``run.json`` comes
        next: if nothing was flushed yet, the buffer is dropped instead of written (the
        record holds the same data; a run killed before it is written reruns in full).
        """
        if not any(self._journal.values()):
            return
        if final and not self._flushed:
            self._journal.clear()
            return
        self._flushed = True
        for condition, entries in self._journal.items():
            if not entries:
                continue
            path = self.store.journal(self.version, condition)
            if self.describe is not None:
                entries = [self.describe(condition, e) for e in entries]
            text = json_text(entries, path) + "\n"
            if condition not in self._appended and _torn(path):
                text = "\n" + text  # a killed run left half a line: start ours on a line of its own
            self._appended.add(condition)
            try:
                fh = open(path, "a", encoding="utf-8")
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fh = open(path, "a", encoding="utf-8")
            with fh:
                fh.write(text)
            self._journal[condition] = []
        self._last_flush = time.monotonic()

    def write_results(self, condition: str, metrics: Mapping[str, list[Any]]) -> None:
        """0.27's ``<condition>/results.json``: ``{"metrics": {name: [values]}}``."""
        write_json(self.store.results(self.version, condition), {"metrics": dict(metrics)}, durable=self.durable)

    def mark_complete(self, condition: str) -> None:
        """Write the completion marker (call only when every replicate succeeded)."""
        create_empty(self.store.marker(self.version, condition), durable=self.durable)

    def clear_condition(self, condition: str) -> None:
        """Remove a condition's marker first, then its files (before rewriting it in place)."""
        self.store.marker(self.version, condition).unlink(missing_ok=True)
        self.store.results(self.version, condition).unlink(missing_ok=True)
        self.store.journal(self.version, condition).unlink(missing_ok=True)
        for rep_dir in self.store.version_dir(self.version).glob("replicate_*"):
            shutil.rmtree(rep_dir / condition, ignore_errors=True)
        try:
            self.store.condition_dir(self.version, condition).rmdir()  # only when now empty
        except OSError:
            pass

    def write_metadata(self, replicates: int, exp_id: str, name: str | None) -> None:
        """0.27's ``metadata.json``: ``name`` is ``None`` (JSON null) for an unnamed experiment."""
        write_json(self.store.metadata(self.version), {"replicates": replicates, "id": exp_id, "name": name},
                   durable=self.durable)

    def write_manifest(self, previous: Mapping[str, str] | None = None) -> None:
        """0.27's ``_manifest.json``: artifact file -> step class name."""
        merged = {**(previous or {}), **self.manifest}
        write_json(self.store.manifest(self.version), merged, durable=self.durable)

    def write_record(self, record: RunRecord, *, replace: bool = True) -> None:
        """Write ``run.json``: one top-level key per line, one condition per line (fast C encoder,
        still readable and diff-friendly).

        ``replace=False`` writes in place, for the first record of a new version: a torn
        file there reads as no record, which is what a killed run that early means anyway.
        """
        data = record.to_json()
        conditions = data.pop("conditions")
        path = self.store.run_json(self.version)
        dump = lambda value: json_text(value, path)  # noqa: E731
        lines = [f"  {dump(k)}: {dump(v)}" for k, v in data.items()]
        body = ",\n".join(f"    {dump(k)}: {dump(v)}" for k, v in conditions.items())
        lines.append(f'  "conditions": {{\n{body}\n  }}')
        text = "{\n" + ",\n".join(lines) + "\n}\n"
        if replace or self.durable:
            write_bytes(path, text.encode("utf-8"), durable=self.durable)
        else:
            write_new_bytes(path, text.encode("utf-8"))
