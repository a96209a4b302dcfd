"""Artifacts: files a step writes, and handles that read them in downstream experiments."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crystallize.context import OUTSIDE_RUN, FrozenContext, current_context
from crystallize.datasources.datasource import DataSource
from crystallize.errors import ArtifactNotFoundError, ContextMutationError
from crystallize.names import BASELINE, validate_name

logger = logging.getLogger(__name__)

__all__ = ["Artifact", "ArtifactInput", "ArtifactLog", "ArtifactRecord", "clean_staged"]


@dataclass(slots=True)
class ArtifactRecord:
    """One file written during a run: bytes in memory, or a staged file on disk."""

    name: str
    data: bytes | None
    step_name: str | None = None
    staged: Path | None = None


class ArtifactLog:
    """Files queued by the running step; the runner persists them into the store.

    Parameters
    ----------
    staging_root : str or Path, optional
        Folder under which :meth:`path` makes this log's staging folder. The runner
        passes one on the store's file system, so a staged file moves into place with a
        rename instead of a copy; default: the system temp folder.
    """

    def __init__(self, staging_root: str | Path | None = None) -> None:
        self._records: list[ArtifactRecord] = []
        self._names: set[str] = set()
        self._staging_root = staging_root
        self._staging_dir: Path | None = None

    def _claim(self, name: str) -> None:
        validate_name(name, what="artifact")
        if name in self._names:
            raise ContextMutationError(f"Artifact '{name}' already written in this run")
        self._names.add(name)

    def add(self, name: str, data: bytes) -> None:
        """Queue ``data`` to be stored as file ``name`` of the current step.

        Raises
        ------
        ContextMutationError
            If ``name`` was already written in this replicate and condition.
        TypeError
            If ``data`` is not ``bytes``.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"artifact {name!r}: data must be bytes, not {type(data).__name__}")
        self._claim(name)
        self._records.append(ArtifactRecord(name, bytes(data)))

    def path(self, name: str) -> Path:
        """A staging path to write a large file ``name`` to; the runner moves it into place."""
        self._claim(name)
        if self._staging_dir is None:
            if self._staging_root is not None:
                os.makedirs(self._staging_root, exist_ok=True)
            self._staging_dir = Path(tempfile.mkdtemp(prefix="crystallize-stage-", dir=self._staging_root))
        target = self._staging_dir / f"{len(self._records)}-{name}"
        self._records.append(ArtifactRecord(name, None, staged=target))
        return target

    def label_new(self, step_name: str) -> None:
        """Attribute records added since the last call to ``step_name``."""
        for record in self._records:
            if record.step_name is None:
                record.step_name = step_name

    def drain(self) -> list[ArtifactRecord]:
        """Take every queued record."""
        records, self._records = self._records, []
        return records

    def clear(self) -> None:
        """Drop every queued record."""
        self._records.clear()

    def unwritten(self) -> ArtifactRecord | None:
        """The first record whose staging path (:meth:`path`) has no file, if any."""
        return next((r for r in self._records if r.staged is not None and not r.staged.exists()), None)

    def discard(self) -> None:
        """Drop every queued record and delete the files staged for them (a failed run's)."""
        for record in self.drain():
            if record.staged is not None:
                clean_staged(record.staged)

    def __iter__(self) -> Iterator[ArtifactRecord]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


def clean_staged(path: Path) -> None:
    """Delete a staged file if it exists, then its staging folder once that is empty."""
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:  # other files still staged there, or already gone
        pass


@dataclass(frozen=True, slots=True)
class ArtifactInput:
    """Where a consumer reads one upstream artifact, pinned by the runner.

    Attributes
    ----------
    version_dir : str
        Absolute path of the upstream ``v<N>`` folder holding the condition read.
    condition : str
        Upstream condition folder read (the consumer's own, or ``baseline``).
    step : str
        Step folder that wrote the file (from ``_manifest.json``).
    replicates : int
        Upstream replicate count; consumer replicate ``r`` reads ``r % replicates``.
    """

    producer: str
    name: str
    version_dir: str
    condition: str
    step: str
    replicates: int

    def path(self, replicate: int) -> Path:
        """File path for consumer replicate ``replicate``."""
        rep = replicate % max(self.replicates, 1)
        return Path(self.version_dir) / f"replicate_{rep}" / self.condition / self.step / self.name


def _default_writer(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    raise TypeError(f"default artifact writer takes bytes or str, not {type(data).__name__}; pass writer=")


def _default_loader(path: Path) -> bytes:
    return Path(path).read_bytes()


class Artifact(DataSource):
    """A named file an experiment produces, and the handle downstream experiments read.

    Parameters
    ----------
    name : str
        File name inside the step's folder (validated as a path segment).
    loader : Callable[[Path], Any], optional
        Reads the file for consumers; default returns the raw bytes.
    writer : Callable[[Any], bytes], optional
        Turns the value given to :meth:`write` into bytes; default accepts bytes or str.

    Notes
    -----
    Graph edges follow artifact identity: the consumer must use the very object listed
    in the producer's ``outputs``. ``write`` works from any step, class-based or not,
    because it uses the context of the step running in this thread.
    """

    def __init__(self, name: str, loader: Callable[[Path], Any] | None = None,
                 writer: Callable[[Any], bytes] | None = None) -> None:
        self.name = validate_name(name, what="artifact")
        self.loader = loader or _default_loader
        self.writer = writer or _default_writer
        self.producer_name: str | None = None
        self._ctx: FrozenContext | None = None

    @property
    def key(self) -> str:
        """``"<producer>#<name>"``: how jobs refer to this artifact."""
        return f"{self.producer_name or '?'}#{self.name}"

    def write(self, data: Any) -> None:
        """Store ``data`` (through ``writer``) as this artifact of the running step.

        Raises
        ------
        RuntimeError
            If called outside a running step.
        """
        ctx = self._ctx or current_context()
        if ctx is None:
            raise RuntimeError(f"Artifact {self.name!r} not bound to context: call write() inside a running step")
        ctx.artifacts.add(self.name, self.writer(data))

    def fetch(self, ctx: FrozenContext) -> Any:
        """Load this artifact for the replicate and condition in ``ctx``.

        Raises
        ------
        ArtifactNotFoundError
            If the runner pinned no upstream run for it, or the file is missing.
        """
        pinned = ctx._inputs.get(self.key)
        if pinned is None and ctx._inputs is OUTSIDE_RUN:
            pinned = self._stored(str(ctx.get("condition", BASELINE)))
        if pinned is None:
            raise ArtifactNotFoundError(
                f"no upstream run of '{self.producer_name}' is available for artifact '{self.name}'; run the "
                "producer first or run both in an ExperimentGraph", path=self.name, name=self.name)
        path = pinned.path(int(ctx.get("replicate", 0)))
        if not path.exists():
            raise ArtifactNotFoundError(f"artifact file missing (from '{self.producer_name}')", path=path, name=self.name)
        return self.loader(path)

    def _stored(self, condition: str) -> ArtifactInput | None:
        """Outside a run (no inputs pinned by a runner): the producer's newest stored run."""
        from crystallize.graph.settings import stored_input  # the runner pins inputs; this is the manual path

        found = stored_input(self, condition)
        if found is not None and found.condition != condition:
            logger.warning("artifact %s for condition '%s' not found in upstream '%s'; falling back to 'baseline'.",
                           self.name, condition, self.producer_name)
        return found

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_ctx"] = None
        state.pop("_producer", None)  # jobs get pinned inputs; the producer stays in the runner
        return state

    def __crystallize_fingerprint__(self) -> bytes:
        return f"artifact:{self.key}".encode()

    def __repr__(self) -> str:
        return f"Artifact({self.name!r}, producer={self.producer_name!r})"
