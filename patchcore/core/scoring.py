"""Patch scores against the memory bank, image scores and anomaly maps (pure array code)."""

from __future__ import annotations

import math

import faiss
import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from patchcore.core import devices
from patchcore.core.distances import candidate_distances
from patchcore.core.torch_search import TorchFlat

# faiss's nearest rows re-ranked in float64: rounding never decides which row is nearest
CANDIDATES = 4


class NearestBank:
    """L2 nearest-neighbour search of patches against the memory bank.

    faiss finds candidates (a flat index by default; banks larger than ``approximate_above``
    patches use an HNSW graph, whose recall the caller can measure with recall_at_1()); the
    reported distances are recomputed in float64 in a fixed order and the candidates re-ranked
    by them, ties to the lower bank row. faiss's own float32 distances depend on its SIMD path
    and thread count; these do not.

    With a torch ``device`` the candidates come from torch_search (exact, on that device; the
    GPU path) instead of faiss; the re-ranking and so the reported distances are the same code.
    """

    def __init__(
        self,
        bank: np.ndarray,
        approximate_above: int = 0,
        hnsw_m: int = 32,
        ef_search: int = 128,
        device: torch.device | None = None,
    ):
        self.bank = np.ascontiguousarray(bank, dtype=np.float32)
        d = self.bank.shape[1]
        self.device = device
        self.approximate = device is None and bool(approximate_above) and len(self.bank) > approximate_above
        self.hnsw_m, self.ef_search = hnsw_m, ef_search
        self.index: faiss.Index | TorchFlat
        if device is not None:
            self.index = TorchFlat(self.bank, device)
            return
        if self.approximate:
            hnsw = faiss.IndexHNSWFlat(d, hnsw_m)
            hnsw.hnsw.efSearch = ef_search
            self.index = hnsw
        else:
            self.index = faiss.IndexFlatL2(d)
        self.index.add(self.bank)

    def describe(self) -> dict:
        if self.device is not None:
            return {"index": f"exact (torch on {devices.describe(self.device)})"}
        if not self.approximate:
            return {"index": "exact (faiss IndexFlatL2)"}
        return {"index": f"approximate (faiss IndexHNSWFlat, M={self.hnsw_m}, efSearch={self.ef_search})"}

    def recall_at_1(self, queries: np.ndarray) -> float:
        """Share of queries whose approximate nearest bank patch is the exact one."""
        exact = faiss.IndexFlatL2(self.bank.shape[1])
        exact.add(self.bank)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        _, truth = exact.search(q, 1)
        assert not isinstance(self.index, TorchFlat), "only an approximate (faiss) index has a recall below 1"
        _, found = self.index.search(q, 1)
        return float(np.mean(truth[:, 0] == found[:, 0]))

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Euclidean distances (M, k) and bank indices (M, k) of each query's k nearest bank rows."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        n_candidates = min(len(self.bank), k + CANDIDATES - 1)
        _, candidates = self.index.search(q, n_candidates)
        exact = candidate_distances(q, self.bank, candidates)
        order = np.lexsort((candidates, exact), axis=-1)[:, :k]  # by distance, then by bank row
        return np.take_along_axis(exact, order, axis=-1), np.take_along_axis(candidates, order, axis=-1)

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """Euclidean distance of each query row to its nearest bank row."""
        return self.search(queries, 1)[0][:, 0]


def reweighted_image_score(
    nearest: NearestBank, patches: np.ndarray, distances: np.ndarray, neighbours: np.ndarray, b: int
) -> float:
    """PatchCore Eq. 7: the max patch score s*, scaled down when its nearest bank patch m*
    sits in a dense part of the bank (the test patch is then close to many nominal ones).

        s = (1 - exp|m_test* - m*| / sum_{m in N_b(m*)} exp|m_test* - m|) * s*

    N_b(m*) are the b nearest bank patches of m* (m* itself among them). b <= 1 turns the
    reweighting off and returns s*. One image's patches; image_scores does many at once.
    """
    return float(image_scores(nearest, patches, distances, neighbours, len(patches), b)[0])


def image_scores(
    nearest: NearestBank,
    patches: np.ndarray,
    distances: np.ndarray,
    neighbours: np.ndarray,
    per_image: int,
    b: int,
    starts: np.ndarray | None = None,
) -> np.ndarray:
    """Eq. 7 for consecutive network inputs of ``per_image`` patches each, with one search for all
    their m* (one query per image would scan the bank image by image, without BLAS).

    With ``starts`` (each image's first input, and their count last) an image is several inputs
    (tiles): its m* is the highest patch over all of them (the first in row order on a tie).
    """
    n = len(patches) // per_image
    top = distances[: n * per_image].reshape(n, per_image).argmax(axis=1) + np.arange(n) * per_image
    if starts is not None:
        top = np.array(
            [top[a + int(np.argmax(distances[top[a:z]]))] for a, z in zip(starts[:-1], starts[1:])], dtype=np.int64
        )
        n = len(top)
    s_star = distances[top].astype(np.float64)
    if b <= 1 or n == 0:
        return s_star
    _, support = nearest.search(nearest.bank[neighbours[top]], k=min(b, len(nearest.bank)))
    d = candidate_distances(patches[top], nearest.bank, support)
    weights = np.empty(n)
    for i in range(n):
        # exp(s*) / sum exp(d), computed without overflow; math.exp and fsum, not numpy's
        # vectorised exp, whose last bit may depend on the CPU's vector width
        peak = float(d[i].max())
        weights[i] = 1.0 - math.exp(float(s_star[i]) - peak) / math.fsum(math.exp(float(x) - peak) for x in d[i])
    return weights * s_star


def reweighting(b: int, smallest_bank: int) -> tuple[int, str | None]:
    """The b that Eq. 7 runs with, and why it is off when it is switched off.

    N_b(m*) needs b bank patches: a smaller bank makes the neighbourhood the whole bank, and a
    one-patch bank gives every image the weight 1 - 1 = 0 (every score exactly 0). So a bank
    smaller than b switches the reweighting off (b = 0, the max patch score s*), said in a note.
    """
    if b > 1 and smallest_bank < b:
        return 0, (
            f"Eq. 7 reweighting switched off: the smallest bank has {smallest_bank} patches, fewer than its b = {b} neighbours; "
            "raise coreset.ratio or lower evaluate.reweight_neighbours"
        )
    return b, None


def image_score(patch_scores: np.ndarray) -> float:
    return float(np.max(patch_scores))


def bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source cells and weights of bilinear resizing with half-pixel centres (align_corners=False)."""
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    return low, np.minimum(low + 1, n_in - 1), src - low


def upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """(h, w) -> (size, size) bilinear, as torch's interpolate(align_corners=False) computes it.

    Written with elementwise float64 operations, so the result does not depend on which SIMD
    kernels (fused multiply-adds or not) a library picks on this CPU.
    """
    g = np.asarray(grid, dtype=np.float64)
    y0, y1, wy = bilinear_taps(g.shape[0], size)
    x0, x1, wx = bilinear_taps(g.shape[1], size)
    rows = g[y0] * (1.0 - wy)[:, None] + g[y1] * wy[:, None]
    return rows[:, x0] * (1.0 - wx)[None, :] + rows[:, x1] * wx[None, :]


def anomaly_map(patch_scores: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Patch scores (h, w) upsampled bilinearly to (size, size), then Gaussian-smoothed."""
    upsampled = upsample(patch_scores, size).astype(np.float32)
    return gaussian_filter(upsampled, sigma=sigma, truncate=4.0) if sigma > 0 else upsampled


def score_images(
    nearest: NearestBank,
    patches: np.ndarray,
    grid: tuple[int, int],
    reweight_neighbours: int,
    size: int,
    sigma: float,
    starts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Image scores (n,) and anomaly maps (V, size, size) for the patches of n whole images' V network inputs (one
    each, or ``starts``: each image's first input and their count last).

    The one scoring path shared by evaluation, the threshold hold-out and predict, so all
    three give the same number for the same image.
    """
    h, w = grid
    per_image = h * w
    n = len(patches) // per_image
    dist, nn = nearest.search(patches, 1)
    dist, nn = dist[:, 0], nn[:, 0]
    scores = image_scores(nearest, patches, dist, nn, per_image, reweight_neighbours, starts)
    maps = np.zeros((n, size, size), dtype=np.float32)
    for i in range(n):
        maps[i] = anomaly_map(dist[i * per_image : (i + 1) * per_image].reshape(h, w), size, sigma)
    return scores, maps


def maxima_on_border(patch_scores: np.ndarray) -> np.ndarray:
    """(n, h, w) patch scores -> (n,) whether each image's highest patch lies on the grid's border.

    A diagnostic of the feature aggregation: when border patches are noisier than the bank's
    patches, the image score comes from the border instead of from the part.
    """
    n, h, w = patch_scores.shape
    rows, cols = np.unravel_index(patch_scores.reshape(n, -1).argmax(axis=1), (h, w))
    return np.asarray((rows == 0) | (rows == h - 1) | (cols == 0) | (cols == w - 1))
