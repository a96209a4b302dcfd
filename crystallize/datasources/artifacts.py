"""Artifacts: files a step writes, and handles that read them in downstream experiments."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crystallize.context import OUTSIDE_RUN, FrozenContext, current_context
from crystallize.datasources.datasource import DataSource
from crystallize.errors import ArtifactNotFoundError, ContextMutationError
from crystallize.names import BASELINE, validate_name
from crystallize.results import plain_key

logger = logging.getLogger(__name__)

__all__ = ["Artifact", "ArtifactInput", "ArtifactLog", "ArtifactRecord", "clean_staged", "discard_staged",
           "sweep_staging"]

_STAGE_PREFIX = "crystallize-stage-"  # + "<pid>[+<runner pid>]@<host>." + mkdtemp's random letters


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
            raise ContextMutationError(f"Artifact '{name}' already written in this replicate and condition")
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
        """A staging path to write a large file ``name`` to; the runner moves it into place.

        The staging folder's name carries the owning process ids (see :func:`sweep_staging`).
        """
        self._claim(name)
        if self._staging_dir is None:
            if self._staging_root is not None:
                os.makedirs(self._staging_root, exist_ok=True)
            prefix = f"{_STAGE_PREFIX}{_staging_owner()}."
            self._staging_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=self._staging_root))
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

    @property
    def staging(self) -> bool:
        """Whether :meth:`path` was called (a staging folder exists)."""
        return self._staging_dir is not None

    def settle(self) -> None:
        """Make each staged file a regular file of this run's own, ready to hash and move.

        A symlink, or a file with other hard links, is replaced by a copy of the bytes it
        shows now: moving it as is would let the stored file change with the outside one.

        Raises
        ------
        ArtifactNotFoundError
            If a staging path holds no file (a dangling symlink included) or something
            other than a regular file after following symlinks (a folder, a pipe);
            ``.step_name`` names the step that asked for the path.
        """
        for record in self._records:
            if record.staged is not None:
                _own_regular_file(record, record.staged)

    def discard(self) -> None:
        """Drop every queued record and delete what was staged for them (a failed or in-memory run's)."""
        discard_staged(self.drain())
        if self._staging_dir is not None:  # whatever else the step left in its staging folder
            shutil.rmtree(self._staging_dir, ignore_errors=True)

    def __iter__(self) -> Iterator[ArtifactRecord]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


def _staging_error(record: ArtifactRecord, problem: str) -> ArtifactNotFoundError:
    return ArtifactNotFoundError(f"step '{record.step_name}' {problem}", path=record.name, name=record.name,
                                 step_name=record.step_name)


def _own_regular_file(record: ArtifactRecord, path: Path) -> None:
    """Check one staged path and replace a link found there with a copy of its bytes."""
    asked = f"ctx.artifacts.path({record.name!r})"
    try:
        found = os.lstat(path)
        target = os.stat(path) if stat.S_ISLNK(found.st_mode) else found
    except OSError:  # nothing there, or a symlink to nothing
        raise _staging_error(record, f"asked for {asked} but wrote no file there") from None
    if not stat.S_ISREG(target.st_mode):
        what = "a folder" if stat.S_ISDIR(target.st_mode) else "something other than a regular file"
        raise _staging_error(record, f"wrote {what} at {asked}; an artifact is one file: write one file there "
                                     "(e.g. an archive of the folder, from shutil.make_archive)")
    if target is found and found.st_nlink == 1:
        return
    copy = path.with_name(f".{path.name}.copy")
    try:
        shutil.copyfile(path, copy)
        os.replace(copy, path)
    except OSError as exc:
        copy.unlink(missing_ok=True)
        raise _staging_error(record, f"linked {asked} to a file that cannot be copied ({exc})") from exc


def discard_staged(records: Iterable[ArtifactRecord]) -> None:
    """Delete the staged files of records that will not be stored (e.g. a result replaced by a rerun)."""
    for record in records:
        if record.staged is not None:
            clean_staged(record.staged)


def clean_staged(path: Path) -> None:
    """Delete a staged file (or folder) if it exists, then its staging folder once that is empty."""
    try:
        path.unlink(missing_ok=True)
    except OSError:  # a folder (IsADirectoryError on Linux, PermissionError on macOS)
        if not path.is_dir() or path.is_symlink():
            raise
        shutil.rmtree(path, ignore_errors=True)
    try:
        path.parent.rmdir()
    except OSError:  # other files still staged there, or already gone
        pass


def _host() -> str:
    """This machine's name, as a file-name-safe string (stores may be shared between machines)."""
    uname = getattr(os, "uname", None)
    name = uname().nodename if uname is not None else os.environ.get("COMPUTERNAME", "")
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "host"


def _staging_owner() -> str:
    """``<pid>[+<runner pid>]@<host>``: the processes whose death makes a staging folder garbage."""
    return _owner_of(os.getpid())


@functools.lru_cache(maxsize=4)
def _owner_of(pid: int) -> str:
    """:func:`_staging_owner` for process ``pid`` (the key: a forked child asks again).

    A worker process started by ``multiprocessing`` also names its parent (the runner,
    which moves the files into the store after the worker answers).
    """
    process = sys.modules.get("multiprocessing.process")  # a multiprocessing child has it imported
    parent = process.parent_process() if process is not None else None
    pids = f"{pid}+{parent.pid}" if parent is not None and parent.pid else str(pid)
    return f"{pids}@{_host()}"


def _owner_pids(folder: str, host: str) -> list[int]:
    """The owner pids named by a staging folder of this host; empty when it is not one (keep it)."""
    if not folder.startswith(_STAGE_PREFIX):
        return []
    owner, dot, _random = folder[len(_STAGE_PREFIX):].rpartition(".")
    pids, at, folder_host = owner.partition("@")
    if not (dot and at) or folder_host != host:
        return []
    parts = pids.split("+")
    return [int(p) for p in parts] if all(p.isdigit() and int(p) > 0 for p in parts) else []


def _gone(pid: int) -> bool:
    """True only when no process ``pid`` exists (signal 0 probes without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. PermissionError: it exists, under another user
        return False
    return False


def sweep_staging(staging_dir: str | os.PathLike[str]) -> int:
    """Delete staging folders under ``staging_dir`` whose owner processes are all gone.

    Files a step staged reach the store when its job's result is persisted; a killed or
    crashed run leaves them behind. A folder is removed only when its name proves that
    every process owning it (see :meth:`ArtifactLog.path`) no longer exists on this
    machine; folders of live processes, of other machines, or with names from older
    versions are kept.

    Parameters
    ----------
    staging_dir : str or PathLike
        A store's ``.staging`` folder; missing is fine.

    Returns
    -------
    int
        Number of folders removed.
    """
    if os.name != "posix":  # os.kill(pid, 0) probes a process only on POSIX (on Windows it sends CTRL_C)
        return 0
    try:
        entries = list(os.scandir(staging_dir))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    host, removed = _host(), 0
    for entry in entries:
        pids = _owner_pids(entry.name, host)
        if pids and all(_gone(pid) for pid in pids) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    if removed:
        logger.info("removed %d staging folder(s) left in %s by processes that are gone", removed,
                    os.fspath(staging_dir))
    return removed


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
            If no upstream run is pinned (in a run) or readable (outside one: the
            message says what the producer's newest run holds), or the file is missing.
        """
        pinned = ctx._inputs.get(self.key)
        if pinned is None and ctx._inputs is OUTSIDE_RUN:
            pinned = self._stored(str(ctx.get("condition", BASELINE)))  # raises, saying what it found
        if pinned is None:
            producer = f"'{self.producer_name}'" if self.producer_name is not None else (
                "its producer (or it is not listed in any experiment's outputs)")
            raise ArtifactNotFoundError(
                f"no upstream run of {producer} is available for artifact '{self.name}'; run the "
                "producer first or run both in an ExperimentGraph", path=self.name, name=self.name)
        path = pinned.path(int(ctx.get("replicate", 0)))
        if not path.exists():
            raise ArtifactNotFoundError(f"artifact file missing (from '{self.producer_name}')", path=path, name=self.name)
        return self.loader(path)

    def _stored(self, condition: str) -> ArtifactInput:
        """Outside a run (no inputs pinned by a runner): the producer's newest stored run."""
        from crystallize.graph.settings import stored_input  # the runner pins inputs; this is the manual path

        found = stored_input(self, condition)
        if found.condition not in (condition, plain_key(condition)):
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
