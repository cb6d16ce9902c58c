"""Thresholds, normalised scores and defect regions, each against a reference stated from its definition."""

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage

from patchcore.config import load
from patchcore.core import thresholds
from patchcore.runtime.patchcore_onnx import find_regions, normalised, to_original

from helpers import REPO
from reference_geometry import torchvision_crop_box


def test_f1_max_is_the_best_f1_over_every_possible_threshold():
    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = rng.integers(0, 2, 40)
        labels[:2] = [0, 1]
        scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounded: ties among scores
        value, f1 = thresholds.f1_max(labels, scores)
        best = 0.0
        for t in np.unique(scores):  # brute force: an image is anomalous when score >= t
            tp = int(((scores >= t) & (labels == 1)).sum())
            fp = int(((scores >= t) & (labels == 0)).sum())
            fn = int(((scores < t) & (labels == 1)).sum())
            best = max(best, 2 * tp / (2 * tp + fp + fn))
        assert f1 == pytest.approx(best, abs=1e-12)
        tp = int(((scores >= value) & (labels == 1)).sum())
        fp, fn = int(((scores >= value) & (labels == 0)).sum()), int(((scores < value) & (labels == 1)).sum())
        assert 2 * tp / (2 * tp + fp + fn) == pytest.approx(best, abs=1e-12)


def _coverage(n: int, q: float, trials: int = 4000) -> float:
    rng = np.random.default_rng(n)
    truth = -math.log(1 - q)  # the q-quantile of Exp(1)
    hits = 0
    for _ in range(trials):
        lo, hi, _ = thresholds.quantile_interval(rng.exponential(size=n), q)
        hits += (lo is None or lo <= truth) and (hi is None or truth <= hi)
    return hits / trials


@pytest.mark.parametrize(("n", "q"), [(30, 0.5), (200, 0.9), (500, 0.99)])
def test_quantile_interval_covers_the_true_quantile_at_least_95_percent(n, q):
    lo, hi, note = thresholds.quantile_interval(np.arange(n, dtype=float), q)
    assert lo is not None and hi is not None and note is None
    assert _coverage(n, q) >= 0.94  # >= 0.95 by construction; 0.01 for the simulation's own noise


def test_quantile_interval_says_when_an_end_cannot_be_bounded():
    # P(all n below the 0.99 quantile) = 0.99^n must fall under 2.5% before X_(n) bounds it: n >= 368
    assert thresholds.quantile_interval(np.arange(367.0), 0.99)[1] is None
    assert thresholds.quantile_interval(np.arange(368.0), 0.99)[1] == 367.0
    lo, hi, note = thresholds.quantile_interval(np.arange(152.0), 0.99)
    assert (
        hi is None
        and lo is not None
        and "152 scores cannot bound the 0.99 quantile from above" in note
        and "368" in note
    )


def test_false_reject_interval_is_clopper_pearson():
    # Clopper-Pearson for 0 of n: [0, 1 - 0.025^(1/n)]; for n of n: [0.025^(1/n), 1]
    assert thresholds.rate_interval(0, 48) == [0.0, pytest.approx(1 - 0.025 ** (1 / 48), abs=1e-6)]
    assert thresholds.rate_interval(10, 10) == [pytest.approx(0.025 ** (1 / 10), abs=1e-6), 1.0]
    out, reasons = thresholds.at_threshold(np.zeros(48, dtype=int), np.r_[np.zeros(47), 5.0], 5.0)
    assert (
        out["false_reject_rate"] == pytest.approx(1 / 48, abs=1e-6)
        and out["recall"] is None
        and "no defective" in reasons["recall"]
    )


def test_normalised_score_is_half_at_the_threshold_clamped_and_monotone():
    held = np.array([1.0, 1.5, 2.0, 3.0])
    t = 2.8
    s = np.linspace(-5, 20, 101)
    n = np.array([normalised(x, t, held.min(), held.max()) for x in s])
    assert normalised(t, t, 1.0, 3.0) == 0.5
    assert n.min() == 0.0 and n.max() == 1.0 and np.all(np.diff(n) >= 0)
    assert np.all((n > 0.5) == (s > t))


def test_original_map_inverts_the_resize_and_centre_crop():
    """A hot block of the network-input map lands where the transforms took those pixels from."""
    params = load(REPO / "params.yaml")
    for name, (h, w) in itertools.product(
        ("wide_resnet50", "efficientnet_lite0"), [(200, 300), (411, 257), (1024, 1024)]
    ):
        bb = params.backbones[name]
        box = torchvision_crop_box(bb.resize, bb.crop, bb.interpolation, (h, w))
        s = bb.crop
        # independently: the shorter side goes to `resize`, the other by the same factor; the crop is centred
        scale = bb.resize / min(h, w)
        rh, rw = int(bb.resize * h / w) if h > w else bb.resize, int(bb.resize * w / h) if w > h else bb.resize
        top, left = int(round((rh - s) / 2)), int(round((rw - s) / 2))
        assert box == pytest.approx((-left, -top, rw - left, rh - top), abs=1e-2)
        amap = np.zeros((s, s), np.float32)
        amap[40:60, 100:130] = 1.0
        omap = to_original(amap, box, (h, w))
        assert omap.shape == (h, w)
        ys, xs = np.nonzero(omap >= 0.5)
        # the block's edges in original pixels: (net + offset) / scale, with the resized sides' rounding
        sx, sy = rw / w, rh / h
        assert xs.min() == pytest.approx((100 + left) / sx, abs=1.5) and xs.max() + 1 == pytest.approx(
            (130 + left) / sx, abs=1.5
        )
        assert ys.min() == pytest.approx((40 + top) / sy, abs=1.5) and ys.max() + 1 == pytest.approx(
            (60 + top) / sy, abs=1.5
        )
        assert scale > 0
        if w > h:  # pixels left and right of the crop were never seen: 0, never flagged
            assert omap[:, : int(left / sx) - 1].max() == 0.0


def test_regions_are_8_connected_with_boxes_areas_and_peaks():
    omap = np.zeros((50, 80), np.float32)
    omap[10:15, 20:30] = 2.0  # a 5 x 10 block
    omap[15, 30] = 3.0  # touches the block only at a corner: the same region under 8-connectivity
    omap[40:42, 60:63] = 1.5
    mask, regions = find_regions(omap, 1.0)
    assert mask.sum() == 50 + 1 + 6
    assert regions == [
        {"x": 20, "y": 10, "width": 11, "height": 6, "area": 51, "max_score": 3.0},
        {"x": 60, "y": 40, "width": 3, "height": 2, "area": 6, "max_score": 1.5},
    ]
    # against scipy's own 8-connected labelling
    _, n = ndimage.label(omap >= 1.0, structure=np.ones((3, 3)))
    assert n == len(regions)
    assert find_regions(omap, 10.0)[1] == []


def _type7(values, q: float) -> float:
    """The q-quantile as linear interpolation between order statistics (Hyndman & Fan's type 7,
    numpy's default): x_(floor(h)) + (h - floor(h)) (x_(floor(h)+1) - x_(floor(h))), h = (n - 1) q."""
    x = sorted(float(v) for v in values)
    h = (len(x) - 1) * q
    low = math.floor(h)
    return x[low] + (h - low) * (x[min(low + 1, len(x) - 1)] - x[low])


@pytest.mark.parametrize("n", [7, 40, 152])
@pytest.mark.parametrize("q", [0.95, 0.99, 0.995])
def test_the_label_free_thresholds_are_the_configured_quantile_by_the_stated_method(n, q):
    held = np.random.default_rng(n).gamma(2.0, 1.0, n)
    expected = _type7(held, q)
    # the held-out scores discriminate: another level or another quantile method gives another number
    others = [_type7(held, 0.9)] + [
        float(np.quantile(held, q, method=m)) for m in ("higher", "nearest", "hazen", "weibull")
    ]
    assert all(abs(o - expected) > 1e-6 for o in others), (expected, others)
    chosen, _ = thresholds.choose("holdout_quantile", q, None, held, "5 folds", np.zeros(0), np.zeros(0))
    assert chosen["threshold"] == round(expected, 6) and chosen["quantile"] == q
    pixel, _ = thresholds.pixel_threshold(held, q, 8)
    assert pixel["threshold"] == round(expected, 6)
