"""Crash-safe file writes: temporary file in the same folder, then ``os.replace``."""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["fsync_dir", "json_default", "json_text", "move_into_place", "write_bytes", "write_json"]

logger = logging.getLogger(__name__)


_TEMP_COUNTER = itertools.count()  # next() is atomic under the GIL, so threads never share a name


def _temp_name(path: Path) -> Path:
    # pid + counter is unique among live writers; a leftover from a killed process is simply truncated
    return path.with_name(f".{path.name}.{os.getpid()}.{next(_TEMP_COUNTER)}.tmp")


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (so a rename survives power loss)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes | memoryview, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the whole new one.

    Parameters
    ----------
    path : Path
        Destination; its folder is created if missing.
    data : bytes
        Content.
    durable : bool
        Also ``fsync`` the file and its folder.
    """
    tmp = _temp_name(path)
    try:
        fh = open(tmp, "wb")
    except FileNotFoundError:  # the folder is missing: create it only then (one syscall saved per write)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(tmp, "wb")
    try:
        with fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def create_empty(path: Path, *, durable: bool = False) -> None:
    """Create an empty file (a completion marker) in one step.

    An empty file is whole the moment it exists, so the temporary name and rename that
    :func:`write_bytes` needs buy nothing here (and cost a file-system journal entry each).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    if durable:
        fsync_dir(path.parent)


def write_new_bytes(path: Path, data: bytes | memoryview, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` in place when no file is there yet, else as :func:`write_bytes`.

    For files no reader opens before a later marker or record says they are complete
    (artifact files): a run killed mid-write leaves a torn file that nothing lists, and a
    resume writes it again. An existing file is replaced through a temporary name, so a
    reader of the old one is never cut short.
    """
    try:
        fh = open(path, "xb", buffering=0)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "xb", buffering=0)
    except FileExistsError:
        write_bytes(path, data, durable=durable)
        return
    try:
        with fh:
            fh.write(data)
            if durable:
                os.fsync(fh.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def json_default(value: Any) -> Any:
    """JSON for values the ``json`` module does not know: numpy scalars and arrays, paths,
    sets; anything else is stored as its ``repr`` so a run's results are never lost."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


_COMPACT = json.JSONEncoder(allow_nan=True, default=json_default)  # one encoder: building one per call costs ~1 us


def _plain(value: Any, path: tuple[int, ...] = ()) -> Any:
    """``value`` with what JSON cannot hold made plain: non-scalar mapping keys become their
    ``repr``, a container that contains itself becomes its ``repr``."""
    if isinstance(value, (dict, list, tuple)):
        if id(value) in path:
            return repr(value)
        inner = (*path, id(value))
        if isinstance(value, dict):
            return {k if k is None or isinstance(k, (str, int, float, bool)) else repr(k): _plain(v, inner)
                    for k, v in value.items()}
        return [_plain(v, inner) for v in value]
    return value


def json_text(obj: Any, where: os.PathLike[str] | str, *, indent: int | None = None) -> str:
    """``obj`` as JSON text (see :func:`json_default`); never fails on a metric value.

    A mapping with keys JSON has no form for (tuples, objects) or a container that holds
    itself cannot be written as is: it is written with those parts as text instead, and a
    warning names ``where``, so a finished run's results are never lost to one odd value.
    """
    try:
        if indent is None:
            return _COMPACT.encode(obj)
        return json.dumps(obj, indent=indent, allow_nan=True, default=json_default)
    except (TypeError, ValueError) as exc:
        logger.warning("%s: a value JSON cannot hold as is (%s) was written with its keys or cycles as text",
                       os.fspath(where), exc)
        return json.dumps(_plain(obj), indent=indent, allow_nan=True, default=json_default)


def write_json(path: Path, obj: Any, *, durable: bool = False, indent: int | None = 2) -> None:
    """Atomically write ``obj`` as JSON (keys kept in insertion order; see :func:`json_text`)."""
    write_bytes(path, json_text(obj, path, indent=indent).encode("utf-8"), durable=durable)


def move_into_place(src: Path, dst: Path, *, durable: bool = False) -> None:
    """Move a staged file to ``dst`` atomically (copying first across file systems)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError:
        tmp = _temp_name(dst)
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        Path(src).unlink(missing_ok=True)
    if durable:
        fsync_dir(dst.parent)
