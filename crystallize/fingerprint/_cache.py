"""The per-process code cache: the one piece of global mutable state in ``fingerprint``.

It remembers, per code object and per class object (by identity, through weak
references), the result of reading and normalising source, which is the slow
part of a code fingerprint; and, per top-level module name, the distribution
and version it belongs to. It never stores a finished fingerprint: module
globals, closure cells and default values are read afresh on every call, so a
reloaded module (new code objects) or a rebound constant is always seen.
"""

from __future__ import annotations

import threading
import weakref
from typing import Generic, TypeVar

__all__ = ["CODE_CACHE", "CodeCache", "IdentityCache", "clear_code_cache"]

T = TypeVar("T")


class IdentityCache(Generic[T]):
    """Values keyed by the identity of a live object; an entry goes when its object dies.

    Examples
    --------
    >>> class Box:
    ...     pass
    >>> cache, box = IdentityCache(), Box()
    >>> cache.put(box, 1)
    >>> cache.get(box), cache.get(Box())
    (1, None)
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[object], T]] = {}
        self._lock = threading.Lock()

    def get(self, obj: object) -> T | None:
        """Return the value stored for ``obj`` itself, or ``None``."""
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0]() is obj:
            return entry[1]
        return None

    def put(self, obj: object, value: T) -> None:
        """Store ``value`` for ``obj`` until ``obj`` is garbage collected."""
        key = id(obj)
        ref = weakref.ref(obj, lambda dead, key=key: self._drop(key, dead))
        with self._lock:
            self._entries[key] = (ref, value)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: int, dead: weakref.ref[object]) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is dead:
                del self._entries[key]


class CodeCache:
    """Static analyses by code or class identity, and package versions by module name."""

    def __init__(self) -> None:
        self.static: IdentityCache[object] = IdentityCache()
        self.packages: dict[str, tuple[str, str]] = {}
        self.distributions: dict[str, list[str]] | None = None

    def clear(self) -> None:
        """Forget everything (the next fingerprint reads all sources again)."""
        self.static.clear()
        self.packages.clear()
        self.distributions = None


#: The documented per-process code cache.
CODE_CACHE = CodeCache()


def clear_code_cache() -> None:
    """Empty the per-process code cache, so the next fingerprints start cold.

    Fingerprints never depend on the cache's content, only their speed does.

    Examples
    --------
    >>> clear_code_cache()
    >>> len(CODE_CACHE.static)
    0
    """
    CODE_CACHE.clear()
