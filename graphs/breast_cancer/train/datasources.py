"""Diagnosis labels of the Wisconsin breast-cancer data (bundled with scikit-learn)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer

from crystallize import data_source


@data_source
def labels(ctx: Any) -> np.ndarray:
    """``(569,) int64``; 1 means benign, 0 malignant."""
    return load_breast_cancer().target
