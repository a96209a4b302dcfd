"""Fit a feature transform on the training rows and apply it to all rows."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from crystallize import Artifact, pipeline_step


@pipeline_step()
def transform_features(data: dict[str, Any], ctx: Any, features: Artifact, *, transform: str = "standardize",
                       n_components: int = 3) -> tuple[dict[str, Any], dict[str, float]]:
    """Write the transformed ``(569, k)`` matrix as ``features.npy``.

    ``transform`` is ``"standardize"`` (zero mean, unit variance per column; k = 30) or
    ``"pca"`` (standardise, then keep the first ``n_components`` principal components).
    """
    X, train = data["tumours"]["X"], ~data["test_mask"]
    scaler = StandardScaler().fit(X[train])
    Z = scaler.transform(X)
    kept_variance = 1.0
    if transform == "pca":
        pca = PCA(n_components=n_components).fit(Z[train])
        Z = pca.transform(Z)
        kept_variance = float(pca.explained_variance_ratio_.sum())
    elif transform != "standardize":
        raise ValueError(f"unknown transform {transform!r}; use 'standardize' or 'pca'")
    features.write(Z)
    return data, {"n_features": int(Z.shape[1]), "kept_variance": kept_variance}
