import numpy as np

from patchcore.core.metrics import image_auroc, pixel_auroc
from patchcore.core.scoring import NearestBank, anomaly_map, image_score


def test_faiss_distances_equal_brute_force():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(500, 32)).astype(np.float32)
    queries = rng.normal(size=(300, 32)).astype(np.float32)
    brute = np.sqrt(((queries[:, None, :] - bank[None]) ** 2).sum(-1)).min(1)
    assert np.allclose(NearestBank(bank).distances(queries), brute, atol=1e-4)
    # a query that is a bank row has distance zero, not a rounding-negative NaN
    assert np.all(NearestBank(bank).distances(bank[:10]) < 1e-3)


def test_anomaly_map_keeps_the_hot_spot_where_it_was():
    scores = np.zeros((8, 8), dtype=np.float32)
    scores[2, 5] = 1.0
    amap = anomaly_map(scores, 64, sigma=4.0)
    assert amap.shape == (64, 64)
    row, col = np.unravel_index(np.argmax(amap), amap.shape)
    assert abs(row - (2 * 8 + 3.5)) <= 2 and abs(col - (5 * 8 + 3.5)) <= 2
    assert amap.max() < 1.0  # the blur spreads the peak
    assert image_score(scores) == 1.0


def test_auroc_known_answers():
    assert image_auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert image_auroc(np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3 of 4
    assert image_auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    masks = np.zeros((2, 4, 4), dtype=bool)
    assert pixel_auroc(masks, np.random.default_rng(0).random((2, 4, 4))) is None
    masks[1, :2, :2] = True
    maps = masks.astype(np.float32) * 2 + 0.1
    assert pixel_auroc(masks, maps) == 1.0


def test_approximate_index_for_large_banks_reports_its_recall():
    rng = np.random.default_rng(1)
    bank = rng.normal(size=(3000, 32)).astype(np.float32)
    queries = rng.normal(size=(500, 32)).astype(np.float32)
    exact = NearestBank(bank, approximate_above=5000)
    approx = NearestBank(bank, approximate_above=1000)
    assert not exact.approximate and approx.approximate
    assert "HNSW" in approx.describe()["index"] and "Flat" in exact.describe()["index"]
    recall = approx.recall_at_1(queries)
    assert 0.9 <= recall <= 1.0
    agree = np.mean(np.isclose(approx.distances(queries), exact.distances(queries), rtol=1e-5))
    assert agree == recall  # a miss is exactly a query whose distance differs


def test_upsampling_is_torchs_bilinear_in_float64():
    import torch
    import torch.nn.functional as F

    from patchcore.core.scoring import upsample

    rng = np.random.default_rng(0)
    for h, w, size in [(33, 33, 260), (28, 28, 224), (5, 7, 64), (10, 10, 5)]:
        grid = (rng.standard_normal((h, w)) * 10).astype(np.float32)
        expected = F.interpolate(
            torch.from_numpy(grid)[None, None], size=(size, size), mode="bilinear", align_corners=False
        )[0, 0].numpy()
        # torch works in float32 (its source coordinates too); the difference is that rounding, no more
        assert np.abs(upsample(grid, size) - expected).max() < 1e-5 * np.abs(grid).max() * max(h, w)


def test_search_reranks_in_float64_with_ties_to_the_lower_row():
    bank = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 3.0]], dtype=np.float32)
    nearest = NearestBank(np.concatenate([bank, bank[1:2]]))  # row 4 duplicates row 1
    distances, index = nearest.search(np.array([[0.9, 0.1], [0.5, 0.5]], dtype=np.float32), k=2)
    assert index[0].tolist() == [1, 4]  # equal distances: lower row first
    q = np.array([0.9, 0.1], dtype=np.float32).astype(np.float64)  # the query as stored, then float64 arithmetic
    assert distances[0, 0] == np.sqrt((q[0] - 1.0) ** 2 + q[1] ** 2)
    assert index[1].tolist() == [0, 1]  # rows 0, 1, 2 and 4 tie at sqrt(0.5): the two lowest
