"""Exact greedy k-center by lazy evaluation, compiled with numba.

Greedy k-center only ever needs the point farthest from the picked centres, not every
point's distance. A point's distance to its nearest centre can only shrink as centres are
added, so a value computed against the first ``a`` centres is an upper bound for later
steps. The points sit in a max-heap by that bound; at each step the top point is brought up
to date one centre at a time, and the moment its distance drops below the runner-up's bound
it sinks back into the heap and the new top is looked at. When the top point is up to date
it is the farthest point: every other point's true distance is at most its bound. Most
points never need their distance to most centres.

A centre can also be passed over without its full distance: the distance in the leading
principal components of the points is a lower bound of the full distance (an orthogonal
projection never lengthens a vector), so a centre whose low-dimensional distance already
exceeds the point's current distance cannot be nearer. On structured data (patch features,
clusters) that settles most pairs at a fraction of the cost; on structureless noise it
settles none, and the lazy heap alone does the saving.

Ties go to the lowest index, as in the textbook loop, so the picks are those of
``sampling.greedy_kcenter_plain``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numba import njit

LOW_DIMS = 16
# A centre is passed over on its low-dimensional bound only when the bound clears the
# point's distance by this much (relative to the largest squared norm), far above rounding.
_BOUND_MARGIN = 1e-9
# Only reassociation (so sums vectorise) and fused multiply-add; comparisons keep IEEE meaning.
# The two entry points release the GIL: other threads (a progress bar, a test's time limit)
# keep running while a selection computes.
_FAST = {"reassoc", "contract"}


@njit(fastmath=_FAST, cache=True)
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    s = 0.0
    for k in range(a.shape[0]):
        s += np.float64(a[k]) * np.float64(b[k])
    return s


@njit(fastmath=_FAST, cache=True)
def _sq_gap(a: np.ndarray, b: np.ndarray) -> float:
    s = 0.0
    for k in range(a.shape[0]):
        t = a[k] - b[k]
        s += t * t
    return s


@njit(cache=True)
def _distance(points, norms, i, centres, centre_norms, j) -> float:
    # the same formula as the textbook loop: |x|^2 - 2 x.c + |c|^2, clipped at 0
    return math.sqrt(max(norms[i] - 2.0 * _dot(points[i], centres[j]) + centre_norms[j], 0.0))


@njit(cache=True)
def _first(key_a, id_a, key_b, id_b) -> bool:
    """Heap order: the larger distance first, then the lower index."""
    return key_a > key_b or (key_a == key_b and id_a < id_b)


@njit(cache=True)
def _sift_down(keys, ids, size, pos) -> None:
    key, idx = keys[pos], ids[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _first(keys[child + 1], ids[child + 1], keys[child], ids[child]):
            child += 1
        if not _first(keys[child], ids[child], key, idx):
            break
        keys[pos], ids[pos] = keys[child], ids[child]
        pos = child
    keys[pos], ids[pos] = key, idx


@njit(cache=True, nogil=True)
def _start(points, norms, low, start, centres, centre_norms, centre_low, keys, ids, checked) -> int:
    """Make ``start`` the first centre and heap every other point by its distance to it."""
    n = points.shape[0]
    for i in range(n):
        norms[i] = _dot(points[i], points[i])
    centres[0], centre_norms[0], centre_low[0] = points[start], norms[start], low[start]
    size = 0
    for i in range(n):
        if i != start:
            keys[size], ids[size] = _distance(points, norms, i, centres, centre_norms, 0), i
            checked[i] = 1
            size += 1
    for pos in range(size // 2 - 1, -1, -1):
        _sift_down(keys, ids, size, pos)
    return size


@njit(cache=True, nogil=True)
def _pick(
    points, norms, low, centres, centre_norms, centre_low, picks, keys, ids, checked, size, t_from, t_to, margin
) -> int:
    """Picks ``t_from`` .. ``t_to - 1``; ``checked[i]``: point i's key covers centres [0, checked[i])."""
    for t in range(t_from, t_to):
        while True:
            i = ids[0]
            if checked[i] == t:
                break  # up to date and still on top: the farthest point
            best = keys[0]
            runner_key, runner_id = -1.0, -1
            if size > 1:
                runner_key, runner_id = keys[1], ids[1]
                if size > 2 and _first(keys[2], ids[2], runner_key, runner_id):
                    runner_key, runner_id = keys[2], ids[2]
            j = checked[i]
            sank = False
            while j < t:
                bound = _sq_gap(low[i], centre_low[j])
                if bound <= best * best + margin:
                    d = _distance(points, norms, i, centres, centre_norms, j)
                    if d < best:
                        best = d
                        if runner_id >= 0 and not _first(best, i, runner_key, runner_id):
                            sank = True
                j += 1
                if sank:
                    break
            checked[i] = j
            keys[0] = best
            if sank:
                _sift_down(keys, ids, size, 0)
        picks[t] = i
        centres[t], centre_norms[t], centre_low[t] = points[i], norms[i], low[i]
        size -= 1
        keys[0], ids[0] = keys[size], ids[size]
        _sift_down(keys, ids, size, 0)
    return size


def low_dimensional(points: np.ndarray, dims: int = LOW_DIMS, sample: int = 20000, rows: int = 65536) -> np.ndarray:
    """The points' coordinates in their ``dims`` leading principal directions (float64, centred)."""
    dims = min(dims, points.shape[1])
    if len(points) < 2:  # no directions to estimate; an all-zero bound never rules a centre out
        return np.zeros((len(points), dims))
    step = max(1, len(points) // sample)
    subset = points[::step].astype(np.float64)
    mean = subset.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov(subset, rowvar=False))
    basis = np.ascontiguousarray(vectors[:, ::-1][:, :dims])
    out = np.empty((len(points), dims))
    for a in range(0, len(points), rows):  # bounded float64 temporaries
        out[a : a + rows] = (points[a : a + rows].astype(np.float64) - mean) @ basis
    return out


def select(
    points: np.ndarray,
    n_pick: int,
    start: int,
    advance: Callable[[int], None] | None = None,
    block: int = 256,
    ready: Callable[[], None] | None = None,
) -> np.ndarray:
    """Greedy k-center picks (indices in pick order) of float32 ``points``, starting from ``start``.

    Memory: the points plus their low-dimensional copy (N x 16 x 8 bytes), a few length-N
    arrays and the picked centres. ``ready()`` is called once the setup (principal components,
    the heap) is done and before the first pick is reported; ``advance(k)`` after every
    ``block`` picks.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    n = len(points)
    low = low_dimensional(points)
    norms = np.empty(n)
    centres = np.empty((n_pick, points.shape[1]), dtype=np.float32)
    centre_norms, centre_low = np.empty(n_pick), np.empty((n_pick, low.shape[1]))
    picks = np.empty(n_pick, dtype=np.int64)
    picks[0] = start
    keys, ids, checked = np.empty(n), np.empty(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    size = _start(points, norms, low, start, centres, centre_norms, centre_low, keys, ids, checked)
    margin = _BOUND_MARGIN * float(norms.max()) + 1e-300
    if ready:
        ready()
    if advance:
        advance(1)
    for t in range(1, n_pick, block):
        stop = min(n_pick, t + block)
        size = _pick(
            points, norms, low, centres, centre_norms, centre_low, picks, keys, ids, checked, size, t, stop, margin
        )
        if advance:
            advance(stop - t)
    return picks
