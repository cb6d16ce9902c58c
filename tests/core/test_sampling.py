import numpy as np
import pytest

from patchcore.core.sampling import (
    coreset_size,
    greedy_kcenter,
    project,
    projection_matrix,
    start_index,
)

from bounded import bounded


def plain_greedy(points: np.ndarray, n_pick: int, start: int) -> list[int]:
    """Textbook greedy k-center: the reference the fast code must agree with pick for pick."""
    picks = [start]
    nearest = np.linalg.norm(points - points[start], axis=1)
    for _ in range(n_pick - 1):
        nxt = int(np.argmax(nearest))
        picks.append(nxt)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[nxt], axis=1))
    return picks


def clustered(rng, n=3000, dim=16, clusters=12, with_labels=False):
    centres = rng.normal(scale=10, size=(clusters, dim))
    labels = rng.integers(clusters, size=n)
    pts = centres[labels] + rng.normal(scale=0.5, size=(n, dim))
    return (pts, labels) if with_labels else pts


@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_identical_picks_to_plain_greedy(kind):
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(2000, 24)) if kind == "random" else clustered(rng)
    pts = pts.astype(np.float32)
    n_pick = 150
    start = start_index(len(pts), 3)
    fast = bounded(greedy_kcenter, pts, n_pick, start, progress=False)
    assert fast.tolist() == plain_greedy(pts.astype(np.float64), n_pick, start)
    assert len(set(fast.tolist())) == n_pick


def test_coreset_covers_every_cluster():
    rng = np.random.default_rng(2)
    pts, labels = clustered(rng, clusters=12, with_labels=True)
    picks = bounded(greedy_kcenter, pts.astype(np.float32), 12, 0, progress=False)
    # well separated clusters: k picks land in k different clusters, so no cluster is left uncovered
    assert sorted(set(labels[picks].tolist())) == list(range(12))


def test_projection_is_seeded_and_streams():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 50)).astype(np.float32)
    m1, m2 = projection_matrix(50, 8, seed=5), projection_matrix(50, 8, seed=5)
    assert np.array_equal(m1, m2)
    assert not np.array_equal(m1, projection_matrix(50, 8, seed=6))
    streamed = project((x[i : i + 128] for i in range(0, 1000, 128)), m1)
    assert np.allclose(streamed, x @ m1, atol=1e-5)
    # written in place when the total is known: the same bytes, and a wrong total is refused
    assert np.array_equal(project((x[i : i + 128] for i in range(0, 1000, 128)), m1, rows=1000), streamed)
    with pytest.raises(ValueError, match="held 1000 rows, not 999"):
        project((x[i : i + 128] for i in range(0, 1000, 128)), m1, rows=999)


def test_coreset_size_bounds():
    assert coreset_size(1000, 0.1) == 100
    assert coreset_size(5, 0.01) == 1
    assert coreset_size(10, 1.0) == 10


@pytest.mark.parametrize("kind", ["random", "clustered", "duplicates", "far_from_origin"])
def test_lazy_greedy_equals_plain_greedy(kind):
    from patchcore.core.sampling import greedy_kcenter_plain

    rng = np.random.default_rng(7)
    if kind == "random":
        pts = rng.normal(size=(6000, 128))
    elif kind == "clustered":  # the low-dimensional bound settles most pairs here
        pts = clustered(rng, n=6000, dim=128, clusters=40)
    elif kind == "duplicates":  # exact duplicates: ties must go to the lowest index in both
        pts = np.repeat(clustered(rng, n=1500, dim=32, clusters=10), 4, axis=0)
    else:  # |x|^2 - 2 x.c + |c|^2 cancels badly here: the bound's margin must still hold
        pts = clustered(rng, n=4000, dim=64, clusters=20) + 300.0
    pts = pts.astype(np.float32)
    for n_pick in (60, 600):
        fast = bounded(greedy_kcenter, pts, n_pick, 11, progress=False)
        plain = greedy_kcenter_plain(pts, n_pick, 11, progress=False)
        assert np.array_equal(fast, plain), kind


def test_picking_every_point_orders_them_all():
    from patchcore.core.sampling import greedy_kcenter_plain

    pts = clustered(np.random.default_rng(3), n=400, dim=8, clusters=5).astype(np.float32)
    fast = bounded(greedy_kcenter, pts, 400, 0, progress=False)
    assert sorted(fast.tolist()) == list(range(400))
    assert np.array_equal(fast, greedy_kcenter_plain(pts, 400, 0, progress=False))
    assert bounded(greedy_kcenter, pts, 1, 17, progress=False).tolist() == [17]
    assert bounded(greedy_kcenter, pts[:1], 1, 0, progress=False).tolist() == [0]  # a single patch
    same = np.repeat(pts[:1], 5, axis=0)  # all equal: every tie goes to the lowest index
    assert (
        bounded(greedy_kcenter, same, 5, 2, progress=False).tolist()
        == greedy_kcenter_plain(same, 5, 2, progress=False).tolist()
        == [2, 0, 1, 3, 4]
    )


def test_low_dimensional_distance_is_a_lower_bound():
    from patchcore.core.lazy_kcenter import low_dimensional

    rng = np.random.default_rng(4)
    pts = clustered(rng, n=3000, dim=128, clusters=30).astype(np.float32)
    low = low_dimensional(pts, dims=16)
    a, b = rng.integers(3000, size=(2, 5000))
    full = np.linalg.norm(pts[a].astype(np.float64) - pts[b], axis=1)
    bound = np.linalg.norm(low[a] - low[b], axis=1)
    assert np.all(bound <= full * (1 + 1e-9) + 1e-9)
    # and a useful one: on clustered data the leading directions carry most of the distance
    assert np.median(bound / np.maximum(full, 1e-12)) > 0.8


def test_non_finite_points_are_refused():
    pts = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    pts[7, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        greedy_kcenter(pts, 5, 0, progress=False)  # refused before the kernel runs


def test_the_progress_clock_starts_after_the_setup(monkeypatch):
    """The coreset bar's rate counts picks only: a slow setup (principal components, the heap of a
    large bank) must not be timed as the first pick, which made the first estimate hours."""
    import time

    from patchcore.core import lazy_kcenter, sampling

    real = lazy_kcenter.low_dimensional

    def slow_setup(points, *args, **kwargs):
        time.sleep(1.0)
        return real(points, *args, **kwargs)

    bars = []

    class Recorded(sampling.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(lazy_kcenter, "low_dimensional", slow_setup)
    monkeypatch.setattr(sampling, "tqdm", Recorded)
    pts = clustered(np.random.default_rng(4), n=500, dim=8).astype(np.float32)
    started = time.monotonic()
    greedy_kcenter(pts, 50, 0, progress=True)  # in this process: the bar is recorded here
    assert time.monotonic() - started >= 1.0
    (bar,) = bars
    assert bar.n == 50 and bar.format_dict["elapsed"] < 0.5  # the sleep is not in the bar's time
