"""Exact Euclidean distances in float64 in one fixed order of summation, compiled with numba.

faiss finds each query's candidate rows with float32 arithmetic whose rounding depends on its
SIMD path and thread count; the distances the project reports are recomputed here, so they
are the same bytes on every x86 machine: each coordinate's difference and square in float64,
then summed by pairwise halving (the vector zero-padded to a power of two; element t plus
element t + half, until one is left). Every step is one IEEE operation on two values, so
neither the vector width nor fused multiply-adds can change a bit (numba's default: no
fast-math, no contraction).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _candidates(queries, bank, candidates, out, width) -> None:
    m, k = candidates.shape
    d = queries.shape[1]
    buf = np.zeros(width)
    for i in range(m):
        for j in range(k):
            row = candidates[i, j]
            if row < 0:  # faiss's "no row" (an HNSW graph may return fewer than asked for)
                out[i, j] = np.inf
                continue
            for t in range(d):
                x = np.float64(bank[row, t]) - np.float64(queries[i, t])
                buf[t] = x * x
            for t in range(d, width):
                buf[t] = 0.0
            half = width // 2
            while half >= 1:
                for t in range(half):
                    buf[t] = buf[t] + buf[t + half]
                half //= 2
            out[i, j] = np.sqrt(buf[0])


def candidate_distances(queries: np.ndarray, bank: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(M, K) float64 distances between queries (M, D) and their candidate bank rows (M, K);
    a candidate of -1 gets infinity."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    candidates = np.ascontiguousarray(candidates, dtype=np.int64)
    if len(candidates) != len(queries) or (candidates >= len(bank)).any():
        raise ValueError("candidates must be one row per query, of bank rows")
    width = 1 << max(0, (queries.shape[1] - 1).bit_length())
    out = np.empty(candidates.shape, dtype=np.float64)
    _candidates(queries, bank, candidates, out, width)
    return out
