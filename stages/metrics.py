"""Detection and localisation metrics (pure array code)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def image_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(np.asarray(labels, dtype=np.int8), np.asarray(scores, dtype=np.float64)))


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float | None:
    """AUROC over every pixel of every test image; None when no pixel is defective."""
    truth = np.asarray(masks, dtype=bool).ravel()
    if not truth.any() or truth.all():
        return None
    return float(roc_auc_score(truth, np.asarray(maps, dtype=np.float32).ravel()))
