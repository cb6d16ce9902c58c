"""Approximate greedy coreset subsampling (PatchCore section 3.2; Sener & Savarese 2018).

Pure NumPy; the caller streams feature rows in and gets indices out.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from tqdm import tqdm


def coreset_size(n: int, ratio: float) -> int:
    return max(1, min(n, int(n * ratio)))


def projection_matrix(dim_in: int, dim_out: int, seed: int) -> np.ndarray:
    """A Gaussian random projection (Johnson-Lindenstrauss): distances survive up to small distortion."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((dim_in, dim_out)) / np.sqrt(dim_out)).astype(np.float32)


def project(blocks: Iterable[np.ndarray], matrix: np.ndarray) -> np.ndarray:
    """Project row blocks one at a time, so only the (N, dim_out) result is ever whole in memory."""
    return np.concatenate([np.asarray(block, dtype=np.float32) @ matrix for block in blocks], axis=0)


def start_index(n: int, seed: int) -> int:
    return int(np.random.default_rng(seed).integers(n))


def greedy_kcenter(points: np.ndarray, n_pick: int, start: int, progress: bool = True) -> np.ndarray:
    """Indices of ``n_pick`` points chosen by greedy k-center, beginning at ``start``.

    Each step picks the point farthest from everything picked so far (ties go to the
    lowest index), which spreads the picks over the whole feature distribution.
    Distances are computed in float64 so that the picks do not hinge on rounding.
    """
    pts = np.asarray(points, dtype=np.float64)
    n = pts.shape[0]
    if not 1 <= n_pick <= n:
        raise ValueError(f"n_pick must be in [1, {n}], got {n_pick}")
    sq_norms = np.einsum("ij,ij->i", pts, pts)
    picks = np.empty(n_pick, dtype=np.int64)
    picks[0] = start
    nearest = np.full(n, np.inf)
    for i in tqdm(range(n_pick), desc="coreset", unit="pick", disable=not progress, mininterval=1.0):
        if i:
            picks[i] = int(np.argmax(nearest))
        c = pts[picks[i]]
        dist = sq_norms - 2.0 * (pts @ c) + sq_norms[picks[i]]
        np.minimum(nearest, dist, out=nearest)
        nearest[picks[i]] = -np.inf  # a picked point is never picked again, whatever rounding says
    return picks
