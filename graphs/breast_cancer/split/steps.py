"""Draw a stratified train/test split from the replicate's random generator."""

from __future__ import annotations

from typing import Any

import numpy as np

from crystallize import Artifact, pipeline_step


@pipeline_step()
def stratified_split(data: dict[str, Any], ctx: Any, test_mask: Artifact, *, rng: np.random.Generator,
                     test_fraction: float = 0.3) -> tuple[dict[str, Any], dict[str, float]]:
    """Mark ``test_fraction`` of each class as test rows; write the mask as ``test_mask.npy``.

    ``rng`` is seeded from the replicate's seed, so replicate r always draws the same split
    and different replicates draw different ones.
    """
    y = data["y"]
    mask = np.zeros(y.shape[0], dtype=bool)
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        n_test = int(round(test_fraction * rows.size))
        mask[rng.choice(rows, size=n_test, replace=False)] = True
    test_mask.write(mask)
    return data, {"n_train": int((~mask).sum()), "n_test": int(mask.sum())}
