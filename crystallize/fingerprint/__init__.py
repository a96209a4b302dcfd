"""Fingerprints: canonical value encodings, code digests, environment and input-file hashes.

Spec sections 4 and 11 say what goes into a fingerprint; ``docs/fingerprints.md``
says what is not tracked and how ``version=`` and ``files=`` declare it.

- :mod:`~crystallize.fingerprint.encoding`: :func:`canonical`, :func:`tagged_digest`,
  :func:`value_digest`.
- :mod:`~crystallize.fingerprint.code`: :func:`code_fingerprint`, :class:`CodeFingerprint`.
- :mod:`~crystallize.fingerprint.environment`: :func:`environment_fingerprint`.
- :mod:`~crystallize.fingerprint.files`: :class:`FileHashCache`, :func:`resolve_declared_files`.

The only global mutable state is the per-process code cache (normalised sources
by code object or class, and package versions); :func:`clear_code_cache` empties it.
"""

from __future__ import annotations

from crystallize.fingerprint._cache import clear_code_cache
from crystallize.fingerprint.code import CodeFingerprint, code_fingerprint
from crystallize.fingerprint.encoding import canonical, tagged_digest, value_digest
from crystallize.fingerprint.environment import environment_fingerprint
from crystallize.fingerprint.files import FileHashCache, resolve_declared_files

__all__ = [
    "CodeFingerprint",
    "FileHashCache",
    "canonical",
    "clear_code_cache",
    "code_fingerprint",
    "environment_fingerprint",
    "resolve_declared_files",
    "tagged_digest",
    "value_digest",
]
