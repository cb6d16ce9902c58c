"""Approximate greedy coreset subsampling (PatchCore section 3.2; Sener & Savarese 2018).

No file I/O: the caller streams feature rows in and gets indices out.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from tqdm import tqdm

from patchcore.core import lazy_kcenter


def coreset_size(n: int, ratio: float) -> int:
    return max(1, min(n, int(n * ratio)))


def projection_matrix(dim_in: int, dim_out: int, seed: int) -> np.ndarray:
    """A Gaussian random projection (Johnson-Lindenstrauss): distances survive up to small distortion."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((dim_in, dim_out)) / np.sqrt(dim_out)).astype(np.float32)


def project(blocks: Iterable[np.ndarray], matrix: np.ndarray, rows: int | None = None) -> np.ndarray:
    """Project row blocks one at a time, so only the (N, dim_out) float32 result is ever whole in memory;
    given the total ``rows``, the blocks are written straight into it (no second copy while joining).

    Greedy selection then works on these float32 values exactly, with float64 arithmetic:
    distances can differ in the 7th digit, and float32 sums would let rounding decide.
    """
    if rows is None:
        return np.concatenate([np.asarray(block, dtype=np.float32) @ matrix for block in blocks], axis=0)
    out = np.empty((rows, matrix.shape[1]), dtype=np.float32)
    at = 0
    for block in blocks:
        if at + len(block) <= rows:
            out[at : at + len(block)] = np.asarray(block, dtype=np.float32) @ matrix
        at += len(block)
    if at != rows:
        raise ValueError(f"the blocks held {at} rows, not {rows}")
    return out


def selection_bytes(n: int, dim: int) -> int:
    """Memory of one greedy selection over ``n`` projected points of ``dim`` values (lazy_kcenter.select):
    the float32 points, their low-dimensional float64 copy and four 8-byte arrays of length n."""
    return n * (4 * dim + 8 * lazy_kcenter.LOW_DIMS + 4 * 8)


def start_index(n: int, seed: int) -> int:
    return int(np.random.default_rng(seed).integers(n))


def squared_norms(points: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", points, points)


def _distances(points: np.ndarray, sq: np.ndarray, centre: int) -> np.ndarray:
    """Euclidean distances of all points to ``points[centre]``, by the formula lazy_kcenter uses too."""
    d2 = sq - 2.0 * (points @ points[centre]) + sq[centre]
    return np.sqrt(np.maximum(d2, 0.0))


def _check_pick_count(n: int, n_pick: int) -> None:
    if not 1 <= n_pick <= n:
        raise ValueError(f"n_pick must be in [1, {n}], got {n_pick}")


def greedy_kcenter_plain(points: np.ndarray, n_pick: int, start: int, progress: bool = True) -> np.ndarray:
    """Textbook greedy k-center: every step updates every point. The reference for the fast one.

    Each step picks the point farthest from everything picked so far (ties go to the lowest
    index), which spreads the picks over the whole feature distribution.
    """
    pts = np.ascontiguousarray(points, dtype=np.float64)
    _check_pick_count(len(pts), n_pick)
    sq = squared_norms(pts)
    n = len(pts)
    picks = np.empty(n_pick, dtype=np.int64)
    picks[0] = start
    nearest = np.full(n, np.inf)
    for i in tqdm(range(n_pick), desc="coreset (plain)", unit="pick", disable=not progress, mininterval=1.0):
        if i:
            picks[i] = int(np.argmax(nearest))
        np.minimum(nearest, _distances(pts, sq, picks[i]), out=nearest)
        nearest[picks[i]] = -np.inf  # a picked point is never picked again, whatever rounding says
    return picks


def greedy_kcenter(
    points: np.ndarray, n_pick: int, start: int, progress: bool = True, desc: str = "coreset"
) -> np.ndarray:
    """The same picks as greedy_kcenter_plain, by lazy evaluation (see lazy_kcenter).

    Memory: the float32 points (N x 128 x 4 bytes), their 16-dimensional float64 copy and a
    few length-N arrays; never N x N.
    """
    points = np.asarray(points)
    _check_pick_count(len(points), n_pick)
    if not np.isfinite(points).all():
        raise ValueError("the points hold NaN or infinite values")
    with tqdm(total=n_pick, desc=desc, unit="pick", disable=not progress, mininterval=1.0) as bar:
        # the bar's clock starts when the picking does: the setup (seconds on a large bank) is
        # not a pick, and counted as one it made the first estimate hours
        return lazy_kcenter.select(points, n_pick, start, advance=bar.update, ready=bar.reset)
