"""Fit a logistic regression on the training rows and score the test rows."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from crystallize import Artifact, pipeline_step


@pipeline_step()
def fit_logistic(data: dict[str, Any], ctx: Any, test_scores: Artifact, *,
                 C: float = 1.0) -> tuple[np.ndarray, dict[str, float]]:
    """Record test-set ``auc``, ``accuracy`` and ``log_loss``; write P(benign) per test row."""
    X, y, test = data["features"], data["labels"], data["test_mask"]
    model = LogisticRegression(C=C, max_iter=5000).fit(X[~test], y[~test])
    scores = model.predict_proba(X[test])[:, 1]
    test_scores.write(scores)
    return scores, {"auc": float(roc_auc_score(y[test], scores)),
                    "accuracy": float(accuracy_score(y[test], scores >= 0.5)),
                    "log_loss": float(log_loss(y[test], scores))}
