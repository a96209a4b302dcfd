"""Content hashes of declared input files, cached by file identity and stat.

A file is hashed (BLAKE3, :func:`~crystallize.fingerprint.content.file_digest`) only when its cache entry is
missing, its ``(resolved path, size, mtime_ns, inode)`` changed, or the entry is
*racy*: the file's mtime lay within 2 s of the moment the hash was taken, so a
later write in the same timestamp tick could hide behind an unchanged stat
(git's racy-clean rule). The cache lives in one JSON file, replaced atomically.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from crystallize.fingerprint.content import file_digest

__all__ = ["RACY_WINDOW_NS", "FileHashCache", "resolve_declared_files"]

logger = logging.getLogger(__name__)

#: An entry whose file mtime is closer than this to its hashing time is re-hashed (ns).
RACY_WINDOW_NS = 2_000_000_000
_SCHEMA = 2  # 2: BLAKE3 digests (1 held SHA-256; such a cache is dropped and rebuilt)


@dataclass(frozen=True, slots=True)
class _Entry:
    size: int
    mtime_ns: int
    inode: int
    digest: str
    recorded_ns: int  # time.time_ns() when digest was computed

    def matches(self, stat: os.stat_result) -> bool:
        return (self.size, self.mtime_ns, self.inode) == (stat.st_size, stat.st_mtime_ns, stat.st_ino)

    @property
    def racy(self) -> bool:
        return self.recorded_ns - self.mtime_ns < RACY_WINDOW_NS


class FileHashCache:
    """Content hashes of input files, cached by ``(resolved path, size, mtime_ns, inode)``.

    Parameters
    ----------
    path : Path or None
        JSON file holding the cache; ``None`` keeps it in memory only. A
        missing or unreadable file starts an empty cache.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     data = Path(tmp, "data.csv")
    ...     _ = data.write_text("a,b\\n1,2\\n")
    ...     cache = FileHashCache(Path(tmp, "hashes.json"))
    ...     first = cache.digest(data)
    ...     cache.save()
    ...     FileHashCache(Path(tmp, "hashes.json")).digest(data) == first
    True
    """

    def __init__(self, path: Path | None) -> None:
        self._path = Path(path) if path is not None else None
        self._entries: dict[str, _Entry] | None = None  # read on first use: most runs declare no files
        self._dirty = False
        self._lock = threading.Lock()

    def _loaded(self) -> dict[str, _Entry]:
        if self._entries is None:
            entries = _load(self._path) if self._path is not None else {}
            with self._lock:
                if self._entries is None:
                    self._entries = entries
        return self._entries

    def digest(self, file: Path) -> str:
        """Content digest (BLAKE3 hex) of a file, from the cache when its stat is unchanged.

        Parameters
        ----------
        file : Path
            The file; symlinks are resolved before lookup.

        Returns
        -------
        str
            64 hex characters, the plain BLAKE3 of the bytes (as ``b3sum`` prints).

        Raises
        ------
        FileNotFoundError
            If the file does not exist; the message names it.
        """
        resolved = _resolve(Path(file))
        stat = resolved.stat()
        key = str(resolved)
        entries = self._loaded()
        entry = entries.get(key)
        if entry is not None and entry.matches(stat) and not entry.racy:
            return entry.digest
        digest = file_digest(resolved)  # stat taken before reading: a write meanwhile shows next time
        fresh = _Entry(stat.st_size, stat.st_mtime_ns, stat.st_ino, digest, time.time_ns())
        with self._lock:
            entries[key] = fresh
            self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache file atomically (temp file in the same folder, then ``os.replace``).

        Entries other processes saved meanwhile are kept unless this cache has
        a newer one for the same file. Does nothing for an in-memory cache or
        when nothing changed.
        """
        if self._path is None or not self._dirty:
            return
        with self._lock:
            merged = {**_load(self._path), **(self._entries or {})}  # dirty implies loaded
            payload = {"schema": _SCHEMA, "files": {key: asdict(entry) for key, entry in sorted(merged.items())}}
            _write_atomic(self._path, json.dumps(payload, indent=1))
            self._dirty = False


def resolve_declared_files(files: Sequence[str | Path], base_dir: Path) -> tuple[Path, ...]:
    """Turn declared input files into paths: relative ones against ``base_dir``, absolute kept.

    Parameters
    ----------
    files : sequence of str or Path
        As declared in ``@data_source(files=[...])`` or YAML ``files:``.
    base_dir : Path
        Folder of the module defining the datasource (or of ``config.yaml``).

    Returns
    -------
    tuple of Path
        One path per declared file, in the order given.

    Raises
    ------
    TypeError
        If an entry is not a ``str`` or path-like object.

    Examples
    --------
    >>> [p.as_posix() for p in resolve_declared_files(["data/x.csv", "/abs/y.csv"], Path("/proj"))]
    ['/proj/data/x.csv', '/abs/y.csv']
    """
    resolved = []
    for entry in files:
        if not isinstance(entry, (str, os.PathLike)):
            raise TypeError(f"declared file {entry!r} must be a str or path, not {type(entry).__qualname__}")
        path = Path(entry)
        resolved.append(path if path.is_absolute() else Path(base_dir) / path)
    return tuple(resolved)


def _resolve(file: Path) -> Path:
    try:
        return file.resolve(strict=True)
    except FileNotFoundError as exc:
        raise FileNotFoundError(errno.ENOENT, "input file not found", str(file)) from exc


def _load(path: Path) -> dict[str, _Entry]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable file-hash cache %s: %s", path, exc)
        return {}
    files = raw.get("files") if isinstance(raw, dict) and raw.get("schema") == _SCHEMA else None
    entries = {}
    for key, fields in (files or {}).items():
        entry = _entry_from_json(fields)
        if entry is not None:  # a malformed entry is simply not cached
            entries[key] = entry
    return entries


def _entry_from_json(fields: object) -> _Entry | None:
    if not isinstance(fields, dict):
        return None
    try:
        entry = _Entry(**fields)
    except TypeError:
        return None
    numbers = (entry.size, entry.mtime_ns, entry.inode, entry.recorded_ns)
    valid = all(type(n) is int for n in numbers) and isinstance(entry.digest, str)
    return entry if valid else None


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
