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
    """Project row blocks one at a time, so only the (N, dim_out) result is ever whole in memory.

    The result is float64: greedy selection compares distances that can differ in the 7th
    digit, and float32 dot products round differently depending on how many rows one BLAS
    call gets, which would let two correct implementations pick different points.
    """
    return np.concatenate([(np.asarray(block, dtype=np.float32) @ matrix).astype(np.float64) for block in blocks], axis=0)


def start_index(n: int, seed: int) -> int:
    return int(np.random.default_rng(seed).integers(n))


def squared_norms(points: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", points, points)


def _distances(points: np.ndarray, sq: np.ndarray, centre: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distances of ``points[rows]`` (all when None) to ``points[centre]``.

    The one formula both implementations use, so that they see the same numbers.
    """
    block, block_sq = (points, sq) if rows is None else (points[rows], sq[rows])
    d2 = block_sq - 2.0 * (block @ points[centre]) + sq[centre]
    return np.sqrt(np.maximum(d2, 0.0))


def _prepare(points: np.ndarray, n_pick: int) -> tuple[np.ndarray, np.ndarray]:
    pts = np.ascontiguousarray(points, dtype=np.float64)
    if not 1 <= n_pick <= len(pts):
        raise ValueError(f"n_pick must be in [1, {len(pts)}], got {n_pick}")
    return pts, squared_norms(pts)


def greedy_kcenter_plain(points: np.ndarray, n_pick: int, start: int, progress: bool = True) -> np.ndarray:
    """Textbook greedy k-center: every step updates every point. The reference for the fast one.

    Each step picks the point farthest from everything picked so far (ties go to the lowest
    index), which spreads the picks over the whole feature distribution.
    """
    pts, sq = _prepare(points, n_pick)
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


# Skip a group only when the triangle inequality clears it with room for rounding.
_PRUNE_MARGIN = 1e-4
# A pruned step costs a few times more per point looked at than a plain one (gathers, group
# upkeep), so it must skip most points to pay; otherwise run plain steps and look again later.
_PRUNE_WHEN_OPEN_BELOW = 0.2
_RECHECK_EVERY = 32


def greedy_kcenter(points: np.ndarray, n_pick: int, start: int, progress: bool = True) -> np.ndarray:
    """The same picks as greedy_kcenter_plain, with most of the work pruned away.

    Every point belongs to the group of its nearest picked centre; r_j is the largest
    distance within group j. When centre c is added, a point p of group j can only move to c
    if d(p, c) < d(p, c_j) <= r_j, and d(p, c) >= d(c, c_j) - r_j, so a group with
    d(c, c_j) >= 2 r_j keeps all its points and is not looked at. As groups shrink, most of
    them are skipped. Where the data has no structure to exploit (early picks, or i.i.d.
    noise), plain whole-array steps are run instead, and pruning is tried again every few
    picks. Memory: the float64 points (N x 128 x 8 bytes) plus a few length-N arrays.
    """
    pts, sq = _prepare(points, n_pick)
    n = len(pts)
    picks = np.empty(n_pick, dtype=np.int64)
    nearest = np.full(n, np.inf)  # distance to the nearest picked centre
    group = np.zeros(n, dtype=np.int64)  # index (into picks) of that centre
    radius = np.full(n_pick, -np.inf)  # largest nearest-distance in each group (pruned mode)
    farthest = np.zeros(n_pick, dtype=np.int64)  # lowest-index point attaining it (pruned mode)
    big = np.iinfo(np.int64).max
    everything = np.arange(n)

    def refresh(rows: np.ndarray, groups: np.ndarray) -> None:
        """Radius and lowest-index farthest point of ``groups``, whose members are all in ``rows``."""
        radius[groups] = -np.inf
        farthest[groups] = big
        g, near = group[rows], nearest[rows]
        np.maximum.at(radius, g, near)
        at_max = near == radius[g]
        np.minimum.at(farthest, g[at_max], rows[at_max])

    centre_pts = np.empty((n_pick, pts.shape[1]))  # picked points, contiguous: no gather per step

    def farthest_point(k: int) -> int:
        """The point farthest from the first k centres, ties to the lowest index (needs fresh groups)."""
        return int(farthest[:k][radius[:k] == radius[:k].max()].min())

    def open_rows(i: int, c: int) -> tuple[np.ndarray, np.ndarray]:
        """The groups the new centre ``c`` may take points from, and all their points."""
        centre_dist = np.sqrt(np.maximum(sq[picks[:i]] - 2.0 * (centre_pts[:i] @ pts[c]) + sq[c], 0.0))
        open_groups = centre_dist < 2.0 * radius[:i] * (1.0 + _PRUNE_MARGIN) + 1e-12
        return np.flatnonzero(open_groups[group]), np.flatnonzero(open_groups)

    pruning = False
    picks[0] = start
    for i in tqdm(range(n_pick), desc="coreset", unit="pick", disable=not progress, mininterval=1.0):
        if i and pruning:
            c = picks[i] = farthest_point(i)
            rows, looked = open_rows(i, c)
            if len(rows) > n * _PRUNE_WHEN_OPEN_BELOW:
                pruning = False
        elif i:
            c = picks[i] = int(np.argmax(nearest))
        else:
            c = start
        if pruning:
            d = _distances(pts, sq, c, rows)
            closer = d < nearest[rows]
            moved = rows[closer]
            nearest[moved] = d[closer]
            group[moved] = i
        else:
            d = _distances(pts, sq, c)
            np.copyto(group, i, where=d < nearest)  # masked writes: no index arrays on the plain path
            np.minimum(nearest, d, out=nearest)
        nearest[c] = -np.inf  # a picked point is never picked again
        group[c] = i
        centre_pts[i] = pts[c]
        if pruning:
            refresh(rows, np.append(looked, i))
        elif i % _RECHECK_EVERY == _RECHECK_EVERY - 1 and i + 1 < n_pick:
            # Would pruning skip most points now? Rebuild the groups and look at the next pick.
            refresh(everything, np.arange(i + 1))
            pruning = len(open_rows(i + 1, farthest_point(i + 1))[0]) <= n * _PRUNE_WHEN_OPEN_BELOW
    return picks
