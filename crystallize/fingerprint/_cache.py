"""The per-process code cache: the one piece of global mutable state in ``fingerprint``.

It remembers, per code object and per class object (by identity, through weak
references), the result of reading and normalising source, which is the slow
part of a code fingerprint; per source file, whether it is user, third-party or
standard-library code; and, per top-level module name, the distribution and
version it belongs to (so a package upgraded while the process runs is seen
only by the next process). It never stores a finished fingerprint: module
globals, closure cells and default values are read afresh on every call, so a
reloaded module (new code objects) or a rebound constant is always seen.
"""

from __future__ import annotations

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

    def get(self, obj: object) -> T | None:
        """Return the value stored for ``obj`` itself, or ``None``."""
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0]() is obj:
            return entry[1]
        return None

    def put(self, obj: object, value: T) -> None:
        """Store ``value`` for ``obj`` until ``obj`` is garbage collected."""
        key = id(obj)
        self._entries[key] = (weakref.ref(obj, lambda dead, key=key: self._drop(key, dead)), value)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: int, dead: weakref.ref[object]) -> None:
        # Runs inside garbage collection, possibly in the middle of put(): so no lock here.
        # Single dict operations are atomic; a lost race only costs a later cache miss.
        entry = self._entries.get(key)
        if entry is not None and entry[0] is dead:
            self._entries.pop(key, None)


class CodeCache:
    """Static analyses by code or class identity, origins by file, package versions by module name."""

    def __init__(self) -> None:
        self.static: IdentityCache[object] = IdentityCache()
        self.origins: dict[str, object] = {}  # file name -> environment.Origin
        self.packages: dict[str, tuple[str, str]] = {}
        self.distributions: dict[str, list[str]] | None = None

    def clear(self) -> None:
        """Forget everything (the next fingerprint reads all sources again)."""
        self.static.clear()
        self.origins.clear()
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
