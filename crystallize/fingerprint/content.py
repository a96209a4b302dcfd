"""Content hashes of artifact and input-file bytes.

Every artifact is hashed when it is written (its hash is recorded in ``run.json`` and
feeds the fingerprint of each downstream condition that reads it), so the hash sits on
the write path of every step that saves something. BLAKE3 (O'Connor, Aumasson, Neves and
Wilcox-O'Hearn, 2020; the ``blake3`` package binds the reference Rust implementation)
is a 256-bit cryptographic hash that runs about five times faster than SHA-256 on one
core here and spreads over several cores for large inputs. Condition fingerprints stay
SHA-256 (spec §4); they hash short canonical encodings, where speed does not matter.

Digests are 64 lowercase hex characters, the same as the ``b3sum`` command prints.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from blake3 import blake3

__all__ = ["CONTENT_HASH", "bytes_digest", "digest_while", "file_digest"]

CONTENT_HASH = "blake3"  # the algorithm's name, as recorded next to digests in run.json

_CHUNK = 1 << 20
_THREADS_FROM = 1 << 20  # below this, one thread is faster than splitting the work
_OVERLAP_FROM = 1 << 20  # from this size on, hashing runs beside the write (a thread costs ~0.1 ms)


def bytes_digest(data: bytes | bytearray | memoryview) -> str:
    """BLAKE3 hex digest of ``data`` (64 hex characters).

    Parameters
    ----------
    data : bytes-like
        The content; large inputs are hashed on several cores.
    """
    threads = blake3.AUTO if len(data) >= _THREADS_FROM else 1
    return blake3(data, max_threads=threads).hexdigest()


def file_digest(path: str | os.PathLike[str], *, mapped: bool = False) -> str:
    """BLAKE3 hex digest of a file's bytes.

    Parameters
    ----------
    path : str or PathLike
        The file.
    mapped : bool
        Hash through a memory map, on several cores for large files: no copy into a
        buffer (about a third faster for 10 MiB here), but a process truncating the file
        meanwhile would kill this one with ``SIGBUS``. So only for files this run owns
        (staged artifacts); the default reads 1 MiB chunks, where such a race only gives
        a digest of changed bytes.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """
    if mapped:
        threads = blake3.AUTO if os.stat(path).st_size >= _THREADS_FROM else 1
        return blake3(max_threads=threads).update_mmap(path).hexdigest()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as stream:
        count = stream.readinto(buffer)
        hasher = blake3(max_threads=blake3.AUTO if count == _CHUNK else 1)
        while count:
            hasher.update(view[:count])
            count = stream.readinto(buffer)
    return hasher.hexdigest()


def digest_while(data: bytes | bytearray | memoryview, write: Callable[[], None]) -> str:
    """BLAKE3 hex digest of ``data``, computed while ``write()`` runs.

    The hash releases the GIL on large buffers and file writes release it too, so for
    big artifacts the two overlap instead of adding up. If ``write()`` raises, the
    error propagates once the hash thread has finished.
    """
    if len(data) < _OVERLAP_FROM:
        digest = blake3(data).hexdigest()
        write()
        return digest
    hasher = blake3()
    thread = threading.Thread(target=hasher.update, args=(data,), name="crystallize-content-hash")
    thread.start()
    try:
        write()
    finally:
        thread.join()
    return hasher.hexdigest()
