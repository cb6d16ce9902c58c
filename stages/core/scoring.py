"""Patch scores against the memory bank, image scores and anomaly maps (pure array code)."""

from __future__ import annotations

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter


class NearestBank:
    """L2 nearest-neighbour search of patches against the memory bank (faiss).

    Exact (a flat index) by default; banks larger than ``approximate_above`` patches use an
    HNSW graph, whose recall against exact search the caller can measure with recall_at_1().
    """

    def __init__(self, bank: np.ndarray, approximate_above: int = 0, hnsw_m: int = 32, ef_search: int = 128):
        self.bank = np.ascontiguousarray(bank, dtype=np.float32)
        d = self.bank.shape[1]
        self.approximate = bool(approximate_above) and len(self.bank) > approximate_above
        self.hnsw_m, self.ef_search = hnsw_m, ef_search
        self.index: faiss.Index
        if self.approximate:
            hnsw = faiss.IndexHNSWFlat(d, hnsw_m)
            hnsw.hnsw.efSearch = ef_search
            self.index = hnsw
        else:
            self.index = faiss.IndexFlatL2(d)
        self.index.add(self.bank)

    def describe(self) -> dict:
        if not self.approximate:
            return {"index": "exact (faiss IndexFlatL2)"}
        return {"index": f"approximate (faiss IndexHNSWFlat, M={self.hnsw_m}, efSearch={self.ef_search})"}

    def recall_at_1(self, queries: np.ndarray) -> float:
        """Share of queries whose approximate nearest bank patch is the exact one."""
        exact = faiss.IndexFlatL2(self.bank.shape[1])
        exact.add(self.bank)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        _, truth = exact.search(q, 1)
        _, found = self.index.search(q, 1)
        return float(np.mean(truth[:, 0] == found[:, 0]))

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Euclidean distances (M, k) and bank indices (M, k) of each query's k nearest bank rows."""
        squared, index = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        # faiss computes |q|^2 - 2 q.b + |b|^2, which can dip below zero by rounding.
        return np.sqrt(np.maximum(squared, 0.0)), index

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """Euclidean distance of each query row to its nearest bank row."""
        return self.search(queries, 1)[0][:, 0]


def reweighted_image_score(nearest: NearestBank, patches: np.ndarray, distances: np.ndarray, neighbours: np.ndarray, b: int) -> float:
    """PatchCore Eq. 7: the max patch score s*, scaled down when its nearest bank patch m*
    sits in a dense part of the bank (the test patch is then close to many nominal ones).

        s = (1 - exp|m_test* - m*| / sum_{m in N_b(m*)} exp|m_test* - m|) * s*

    N_b(m*) are the b nearest bank patches of m* (m* itself among them). b <= 1 turns the
    reweighting off and returns s*.
    """
    j = int(np.argmax(distances))
    s_star = float(distances[j])
    if b <= 1:
        return s_star
    m_star = nearest.bank[neighbours[j]]
    _, support = nearest.search(m_star[None], k=min(b, len(nearest.bank)))
    d = np.linalg.norm(nearest.bank[support[0]] - patches[j][None], axis=1).astype(np.float64)
    # exp(s*) / sum exp(d), computed without overflow
    weight = 1.0 - np.exp(s_star - d.max()) / np.exp(d - d.max()).sum()
    return weight * s_star


def image_score(patch_scores: np.ndarray) -> float:
    return float(np.max(patch_scores))


def anomaly_map(patch_scores: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Patch scores (h, w) upsampled bilinearly to (size, size), then Gaussian-smoothed."""
    grid = torch.from_numpy(np.ascontiguousarray(patch_scores, dtype=np.float32))[None, None]
    upsampled = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
    return gaussian_filter(upsampled, sigma=sigma, truncate=4.0) if sigma > 0 else upsampled


def score_images(
    nearest: NearestBank, patches: np.ndarray, grid: tuple[int, int], reweight_neighbours: int, size: int, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Image scores (n,) and anomaly maps (n, size, size) for the patches of n whole images.

    The one scoring path shared by evaluation, the threshold hold-out and predict, so all
    three give the same number for the same image.
    """
    h, w = grid
    per_image = h * w
    n = len(patches) // per_image
    dist, nn = nearest.search(patches, 1)
    dist, nn = dist[:, 0], nn[:, 0]
    scores = np.zeros(n, dtype=np.float64)
    maps = np.zeros((n, size, size), dtype=np.float32)
    for i in range(n):
        rows = slice(i * per_image, (i + 1) * per_image)
        scores[i] = reweighted_image_score(nearest, patches[rows], dist[rows], nn[rows], reweight_neighbours)
        maps[i] = anomaly_map(dist[rows].reshape(h, w), size, sigma)
    return scores, maps
