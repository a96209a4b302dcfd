"""0.27's step-cache helpers, kept for code that imports them."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

__all__ = ["CACHE_DIR", "cache_path", "compute_hash", "load_cache", "store_cache"]

#: The cache folder when this module was imported (0.27's constant); the functions below
#: read ``CRYSTALLIZE_CACHE_DIR`` at each call, so a later change of the variable counts.
CACHE_DIR = Path(os.environ.get("CRYSTALLIZE_CACHE_DIR", ".cache"))


def compute_hash(obj: Any) -> str:
    """SHA-256 hex digest of ``pickle.dumps(obj)``."""
    return hashlib.sha256(pickle.dumps(obj)).hexdigest()


def _root() -> Path:
    return Path(os.environ.get("CRYSTALLIZE_CACHE_DIR", ".cache"))


def cache_path(step_hash: str, input_hash: str) -> Path:
    """``<CRYSTALLIZE_CACHE_DIR>/<step_hash>/<input_hash>.pkl``."""
    return _root() / step_hash / f"{input_hash}.pkl"


def load_cache(step_hash: str, input_hash: str) -> Any:
    """Load a cached value; ``FileNotFoundError`` on a miss, ``IOError`` when corrupt."""
    path = cache_path(step_hash, input_hash)
    if not path.exists():
        raise FileNotFoundError(path)
    try:
        return pickle.loads(path.read_bytes())
    except Exception as exc:
        raise OSError(f"corrupt cache entry {path}") from exc


def store_cache(step_hash: str, input_hash: str, data: Any) -> None:
    """Store ``data`` atomically."""
    from crystallize.store.atomic import write_bytes  # here, so definitions can use compute_hash without the store

    write_bytes(cache_path(step_hash, input_hash), pickle.dumps(data))
