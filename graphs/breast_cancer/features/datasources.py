"""The Wisconsin diagnostic breast-cancer data, as bundled with scikit-learn (no download)."""

from __future__ import annotations

from typing import Any

from sklearn.datasets import load_breast_cancer

from crystallize import data_source


@data_source
def breast_cancer(ctx: Any) -> dict[str, Any]:
    """``{"X": (569, 30) float64, "y": (569,) int64}``; y = 1 means benign."""
    bunch = load_breast_cancer()
    return {"X": bunch.data, "y": bunch.target}
