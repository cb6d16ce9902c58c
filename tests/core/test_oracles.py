"""Independent oracles: scores and coreset picks recomputed from their definitions.

Nothing here calls the project's arithmetic: every expected value is brute force in float64
numpy (or torch's own bilinear resize), written from the paper's definitions, so a slip in
the scoring or the selection cannot be mirrored on both sides of an assertion.
"""

import numpy as np
import pytest
import torch

from patchcore.core.sampling import greedy_kcenter
from patchcore.core.scoring import NearestBank, score_images

from bounded import bounded

# float64 brute force against float64 re-ranked distances: only the order of additions differs
RTOL = 1e-12


def nearest_oracle(queries: np.ndarray, bank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's Euclidean distance to its nearest bank row, and every row at that distance."""
    q, b = queries.astype(np.float64), bank.astype(np.float64)
    d = np.sqrt(((q[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))
    return d.min(axis=1), d


def eq7_oracle(patches: np.ndarray, bank: np.ndarray, b: int) -> float:
    """PatchCore Eq. 7 from the paper: s = (1 - exp|m_test* - m*| / sum_{m in N_b(m*)} exp|m_test* - m|) s*."""
    best, d = nearest_oracle(patches, bank)
    j = int(np.argmax(best))
    s_star = best[j]
    if b <= 1:
        return float(s_star)
    m_star = bank[int(np.argmin(d[j]))].astype(np.float64)
    to_m_star = np.sqrt(((bank.astype(np.float64) - m_star) ** 2).sum(axis=1))
    neighbourhood = np.argsort(to_m_star, kind="stable")[:b]  # N_b(m*): m* and its b - 1 nearest
    gaps = np.sqrt(((bank[neighbourhood].astype(np.float64) - patches[j].astype(np.float64)) ** 2).sum(axis=1))
    return float((1.0 - np.exp(s_star) / np.exp(gaps).sum()) * s_star)


def near_tie_bank(n: int = 400, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each query with two bank rows at distances 10 and 10 (1 + 1e-8), stored in a random order.

    float32 (faiss's distances) cannot tell such rows apart: it calls them equal or orders them
    by its rounding, about half of them wrongly here. float64 on the stored values can, so
    only a re-rank in float64 reports every query's true nearest distance.
    """
    rng = np.random.default_rng(seed)
    queries = rng.standard_normal((n, dim)).astype(np.float32)
    u = rng.standard_normal((n, dim))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = rng.standard_normal((n, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    near = queries + (10.0 * u).astype(np.float32)
    far = queries + (10.0 * (1 + 1e-8) * v).astype(np.float32)
    bank = np.empty((2 * n, dim), dtype=np.float32)
    order = rng.permutation(2 * n)  # which of a pair is the lower row is left to chance
    bank[order[:n]], bank[order[n:]] = near, far
    return queries, bank


def banks():
    rng = np.random.default_rng(1)
    plain = rng.standard_normal((300, 24)).astype(np.float32)
    duplicated = np.concatenate([plain[:100], plain[:100], plain[50:150]])  # exact duplicate rows
    queries = rng.standard_normal((400, 24)).astype(np.float32)
    yield "random", queries, plain
    yield "duplicate rows", queries, duplicated
    yield "near ties", *near_tie_bank()


PATHS = {"faiss": None, "torch": torch.device("cpu")}


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("case", [c[0] for c in banks()])
def test_patch_scores_are_the_distance_to_the_nearest_bank_row(case, path):
    _, queries, bank = next(c for c in banks() if c[0] == case)
    nearest = NearestBank(bank, device=PATHS[path])
    expected, all_distances = nearest_oracle(queries, bank)
    distances, rows = nearest.search(queries, 1)
    np.testing.assert_allclose(distances[:, 0], expected, rtol=RTOL, atol=0)
    # the row reported is one at that distance (any of them when rows repeat)
    assert np.allclose(all_distances[np.arange(len(queries)), rows[:, 0]], expected, rtol=RTOL, atol=0)


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("b", [0, 1, 3, 9])
def test_image_scores_and_maps_before_blur_follow_their_definitions(path, b):
    rng = np.random.default_rng(2)
    grid, size, n_images = (6, 5), 40, 4
    bank = rng.standard_normal((120, 16)).astype(np.float32)
    patches = rng.standard_normal((n_images * grid[0] * grid[1], 16)).astype(np.float32)
    patches[7] += 4.0  # one clearly anomalous patch in the first image
    scores, maps = score_images(NearestBank(bank, device=PATHS[path]), patches, grid, b, size, sigma=0.0)
    per_image = grid[0] * grid[1]
    for i in range(n_images):
        rows = patches[i * per_image : (i + 1) * per_image]
        assert scores[i] == pytest.approx(eq7_oracle(rows, bank, b), rel=RTOL)
        patch_scores = nearest_oracle(rows, bank)[0].reshape(grid)
        # the map before blur: the patch scores resized bilinearly (half-pixel centres), here by torch
        reference = torch.nn.functional.interpolate(
            torch.as_tensor(patch_scores)[None, None], size=(size, size), mode="bilinear", align_corners=False
        )[0, 0].numpy()
        np.testing.assert_allclose(maps[i], reference, rtol=1e-6, atol=1e-6)  # maps are float32


def kcenter_oracle(points: np.ndarray, n_pick: int, start: int) -> list[int]:
    """Greedy k-center as Sener & Savarese (and PatchCore Alg. 1) define it: the point farthest
    from the picks so far, every distance from scratch in float64; ties to the lowest index."""
    p = points.astype(np.float64)
    picks = [start]
    nearest = np.sqrt(((p - p[start]) ** 2).sum(axis=1))
    while len(picks) < n_pick:
        candidates = nearest.copy()
        candidates[picks] = -1.0
        pick = int(np.argmax(candidates))
        picks.append(pick)
        nearest = np.minimum(nearest, np.sqrt(((p - p[pick]) ** 2).sum(axis=1)))
    return picks


BLOCK = 256  # picks per compiled call of the lazy selection (patchcore.core.lazy_kcenter.select)
COUNTS = [1, 2, BLOCK - 1, BLOCK, BLOCK + 1, BLOCK + 2, 2 * BLOCK - 1, 2 * BLOCK, 2 * BLOCK + 1]


def point_sets():
    rng = np.random.default_rng(3)
    yield "noise", rng.standard_normal((700, 12)).astype(np.float32)
    centres = 6.0 * rng.standard_normal((9, 12))
    yield "clusters", (centres[rng.integers(0, 9, 700)] + rng.standard_normal((700, 12))).astype(np.float32)


@pytest.mark.parametrize("kind", ["noise", "clusters"])
def test_lazy_kcenter_picks_are_the_textbook_picks_across_every_block_boundary(kind):
    points = dict(point_sets())[kind]
    expected = kcenter_oracle(points, max(COUNTS), start=5)
    for count in COUNTS:
        picks = bounded(greedy_kcenter, points, count, start=5, progress=False)
        assert len(picks) == count and len(set(picks.tolist())) == count, count  # distinct rows
        assert picks.min() >= 0 and picks.max() < len(points), count  # every one a row of the points
        assert picks.tolist() == expected[:count], count


def test_a_tiled_image_is_scored_by_eq7_over_all_its_tiles_patches():
    """An image cut into tiles (different counts per image) scores as the paper's Eq. 7 on the union of its tiles'
    patches: m_test* is the highest patch over every tile, whichever tile holds it."""
    rng = np.random.default_rng(3)
    bank = rng.standard_normal((200, 16)).astype(np.float32)
    per_tile, counts = 12, [3, 1, 4]
    patches = rng.standard_normal((sum(counts) * per_tile, 16)).astype(np.float32)
    patches[7 * per_tile + 5] += 6.0  # the highest patch of the third image sits in its last tile
    starts = np.concatenate([[0], np.cumsum(counts)])
    nearest = NearestBank(bank)
    scores, maps = score_images(nearest, patches, (3, 4), 5, 8, 0.0, starts)
    assert maps.shape == (sum(counts), 8, 8)
    for i in range(len(counts)):
        rows = patches[starts[i] * per_tile : starts[i + 1] * per_tile]
        assert scores[i] == pytest.approx(eq7_oracle(rows, bank, 5), rel=RTOL)


def test_a_tiled_image_takes_eq7_of_its_highest_patch_not_the_highest_eq7_of_its_tiles():
    """Tile A's highest patch (5.0 from the bank) lies by a dense cluster, so Eq. 7 weighs it down to 4.0; tile B's
    (4.9) by a lone bank row keeps about 4.9. The paper's image score is A's (its m_test* is the highest patch), not
    the larger of the two tiles' scores."""
    dim, b = 8, 5
    cluster = np.zeros((b, dim), dtype=np.float32)
    cluster[:, 1] = np.arange(b) * 1e-4  # b rows at one spot
    lone = np.zeros((1, dim), dtype=np.float32)
    lone[0, 0] = 100.0
    bank = np.concatenate([cluster, lone])
    tiles = np.zeros((2, 4, dim), dtype=np.float32)
    tiles[0] = cluster[0]  # tile A: its patches on the cluster, one 5 away
    tiles[0, 2, 2] = 5.0
    tiles[1] = lone[0]  # tile B: on the lone row, one 4.9 away
    tiles[1, 1, 3] = 4.9
    patches = tiles.reshape(-1, dim)
    scores, _ = score_images(NearestBank(bank), patches, (2, 2), b, 4, 0.0, np.array([0, 2]))
    assert scores[0] == pytest.approx(eq7_oracle(patches, bank, b), rel=RTOL)
    assert scores[0] == pytest.approx(4.0, abs=1e-2)
