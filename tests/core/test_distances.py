import math

import numpy as np
import pytest

from patchcore.core.distances import candidate_distances


def halving_sum(values: list[float]) -> float:
    """The order the project's distances are summed in, stated in plain Python floats (IEEE
    doubles): zero-pad to a power of two, then add element t and element t + half, until one is left."""
    size = 1
    while size < len(values):
        size *= 2
    v = values + [0.0] * (size - len(values))
    while len(v) > 1:
        half = len(v) // 2
        v = [v[t] + v[t + half] for t in range(half)]
    return v[0]


@pytest.mark.parametrize("dim", [1, 3, 152, 168, 1024])
def test_distances_are_float64_pairwise_sums_bit_for_bit(dim):
    rng = np.random.default_rng(dim)
    bank = (rng.standard_normal((50, dim)) * 10).astype(np.float32)
    queries = (rng.standard_normal((6, dim)) * 10).astype(np.float32)
    candidates = rng.integers(0, 50, size=(6, 3))
    candidates[2, 1] = -1  # faiss's "no row"
    got = candidate_distances(queries, bank, candidates)
    for i in range(6):
        for j in range(3):
            if candidates[i, j] < 0:
                assert got[i, j] == np.inf
                continue
            differences = [float(b) - float(q) for b, q in zip(bank[candidates[i, j]], queries[i])]
            squares = [x * x for x in differences]
            assert got[i, j] == math.sqrt(halving_sum(squares))  # the same bits, not merely close


def test_candidates_outside_the_bank_are_refused():
    bank = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="bank rows"):
        candidate_distances(np.zeros((1, 2), dtype=np.float32), bank, np.array([[4]]))
