"""Patch scores against the memory bank, image scores and anomaly maps (pure array code)."""

from __future__ import annotations

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter


class NearestBank:
    """Exact L2 nearest-neighbour search of patches against the memory bank (faiss)."""

    def __init__(self, bank: np.ndarray):
        bank = np.ascontiguousarray(bank, dtype=np.float32)
        self.index = faiss.IndexFlatL2(bank.shape[1])
        self.index.add(bank)

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """Euclidean distance of each query row to its nearest bank row."""
        squared, _ = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), 1)
        # faiss computes |q|^2 - 2 q.b + |b|^2, which can dip below zero by rounding.
        return np.sqrt(np.maximum(squared[:, 0], 0.0))


def image_score(patch_scores: np.ndarray) -> float:
    return float(np.max(patch_scores))


def anomaly_map(patch_scores: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Patch scores (h, w) upsampled bilinearly to (size, size), then Gaussian-smoothed."""
    grid = torch.from_numpy(np.ascontiguousarray(patch_scores, dtype=np.float32))[None, None]
    upsampled = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
    return gaussian_filter(upsampled, sigma=sigma, truncate=4.0) if sigma > 0 else upsampled
