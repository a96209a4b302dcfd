"""Artifacts are numpy arrays stored as ``.npy`` bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def save_npy(array: np.ndarray) -> bytes:
    """``np.save`` into memory; the runner writes the bytes into the store."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def load_npy(path: Path) -> np.ndarray:
    """Read an array written by :func:`save_npy`."""
    return np.load(path, allow_pickle=False)
