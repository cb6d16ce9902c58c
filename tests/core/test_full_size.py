"""Pixel metrics at each image's own size, against references written from MVTec's definitions.

The references share no code with patchcore/core/full_size.py: the PRO curve is evaluated at
every distinct score by counting (mean over 8-connected regions of the share at or above it; the
false-positive rate over every normal pixel), the area is summed segment by segment up to the
limit, pixel AUROC is the Mann-Whitney U statistic, and the segmentation F1 is sklearn's."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage, stats
from sklearn.metrics import f1_score

from patchcore.core import full_size
from patchcore.core.localization import aupro, count_pixels, region_shares


def _reference_curve(maps, masks):
    regions = []
    for mask in masks:
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        regions += [labels == r for r in range(1, n + 1)]
    owners = [i for i, mask in enumerate(masks) for _ in range(ndimage.label(mask, np.ones((3, 3)))[1])]
    normal = sum(int((~m).sum()) for m in masks)
    points = [(0.0, 0.0)]
    for t in np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]:
        fp = sum(int(((a >= t) & ~m).sum()) for a, m in zip(maps, masks)) / normal
        pro = np.mean([(maps[o][r] >= t).mean() for o, r in zip(owners, regions)])
        points.append((fp, float(pro)))
    return points


def _reference_area(points, limit):
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


@st.composite
def _images(draw):
    """A few images of different sizes, quantised scores (ties), masks of a few blobs (at least one defect pixel)."""
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 4))
    maps, masks = [], []
    for _ in range(n):
        h, w = draw(st.integers(3, 12)), draw(st.integers(3, 12))
        maps.append((rng.integers(0, draw(st.integers(3, 40)), (h, w)) / 7.0).astype(np.float32))
        masks.append(rng.random((h, w)) < draw(st.floats(0.0, 0.4)))
    masks[0][0, 0] = True
    if all(m.all() for m in masks):
        masks[-1][-1, -1] = False
    return maps, masks


@settings(max_examples=60, deadline=None)
@given(_images(), st.sampled_from([0.05, 0.3, 1.0]))
def test_aupro_is_the_area_under_the_curve_of_every_distinct_score(images, limit):
    maps, masks = images
    got = full_size.aupro(maps, masks, limit)
    assert got == pytest.approx(_reference_area(_reference_curve(maps, masks), limit), abs=1e-9)


def test_aupro_by_hand():
    # one image: a region of 2 pixels scored 3 and 1, four normal pixels scored 2, 0, 0, 0
    amap = np.array([[3.0, 1.0], [2.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    mask = np.array([[1, 1], [0, 0], [0, 0]], dtype=bool)
    # curve: (0, 0) -> t=3: (0, 0.5) -> t=2: (0.25, 0.5) -> t=1: (0.25, 1) -> t=0: (1, 1)
    fpr, pro = full_size.pro_curve([amap], [mask])
    assert list(fpr) == [0.0, 0.0, 0.25, 0.25, 1.0] and list(pro) == [0.0, 0.5, 0.5, 1.0, 1.0]
    # up to 0.3: 0.25 x 0.5, then 0.05 x 1.0 -> 0.175 / 0.3
    assert full_size.aupro([amap], [mask], 0.3) == pytest.approx(0.175 / 0.3)
    assert full_size.aupro([amap], [mask], 0.05) == pytest.approx(0.5)


def test_full_size_equals_the_binned_aupro_where_the_bins_hold_every_score():
    rng = np.random.default_rng(5)
    maps = [(rng.integers(0, 30, (16, 16)) / 3.0).astype(np.float32) for _ in range(3)]
    masks = [rng.random((16, 16)) < 0.2 for _ in range(3)]
    counts = count_pixels(np.stack(masks), np.stack(maps))  # fewer distinct scores than bins: exact
    binned = aupro(counts.neg.sum(0), region_shares(counts.regions), 0.05)
    assert full_size.aupro(maps, masks, 0.05) == pytest.approx(binned, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(_images(), st.floats(0.0, 6.0))
def test_pixel_auroc_and_segmentation_f1(images, threshold):
    maps, masks = images
    values = np.concatenate([m.ravel() for m in maps])
    truth = np.concatenate([m.ravel() for m in masks])
    u = stats.mannwhitneyu(values[truth], values[~truth]).statistic
    assert full_size.pixel_auroc(maps, masks) == pytest.approx(u / (truth.sum() * (~truth).sum()))
    expected = f1_score(truth, values >= np.float32(threshold), zero_division=0.0)
    assert full_size.seg_f1(maps, masks, threshold) == pytest.approx(expected)


def test_no_defect_pixel_gives_none_and_mismatched_sizes_are_refused():
    maps, masks = [np.zeros((4, 4), np.float32)], [np.zeros((4, 4), bool)]
    assert full_size.aupro(maps, masks, 0.3) is None and full_size.pixel_auroc(maps, masks) is None
    assert full_size.seg_f1(maps, masks, 0.5) is None
    with pytest.raises(ValueError, match="mask"):
        full_size.aupro([np.zeros((4, 5), np.float32)], [np.ones((4, 4), bool)], 0.3)


def test_plausible_wrong_definitions_of_mvtec_ad2s_figures_give_other_numbers():
    # image 0: a large defect found whole, one false pixel; image 1: a 2-pixel defect missed, nothing flagged
    first, second = np.zeros((6, 6), np.float32), np.zeros((6, 6), np.float32)
    first_mask, second_mask = np.zeros((6, 6), bool), np.zeros((6, 6), bool)
    first_mask[:3, :4] = True
    first[:3, :4], first[5, 5] = 1.0, 1.0
    second_mask[4, 4:6] = True
    maps, masks = [first, second], [first_mask, second_mask]
    pooled = full_size.seg_f1(maps, masks, 0.5)
    assert pooled == pytest.approx(2 * 12 / (13 + 14))  # TP 12, flagged 13, defective 14, over both images
    per_image = np.mean([f1_score(m.ravel(), a.ravel() >= 0.5, zero_division=0.0) for a, m in zip(maps, masks)])
    assert abs(pooled - per_image) > 0.3
    # AU-PRO up to 0.05 is divided by 0.05: the raw area would be 20 times smaller
    renormalised = full_size.aupro(maps, masks, 0.05)
    assert renormalised == pytest.approx(_reference_area(_reference_curve(maps, masks), 0.05))
    fpr, pro = full_size.pro_curve(maps, masks)
    raw = np.trapezoid(np.interp(np.linspace(0, 0.05, 2001), fpr, pro), np.linspace(0, 0.05, 2001))
    assert renormalised > 0.4 and raw < renormalised / 10
