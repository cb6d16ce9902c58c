"""AUPRO, pixel AUROC from counts, bootstrap intervals and Eq. 7 reweighting."""

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from patchcore.core.localization import (
    aupro,
    auroc_from_counts,
    count_pixels,
    region_shares,
)
from patchcore.core.metrics import bootstrap, stratified_resamples
from patchcore.core.scoring import NearestBank, reweighted_image_score


def test_aupro_hand_worked_example():
    # one row of 7 pixels: region A = pixel 1, region B = pixels 3-5, normal pixels 0, 2, 6
    mask = np.array([[[0, 1, 0, 1, 1, 1, 0]]], dtype=bool)
    # threshold 9 finds A (PRO 1/2) at FPR 0; B only appears at threshold 1, where FPR is already 1/3;
    # so PRO = 1/2 on all of (0, 0.3]: area 0.15, normalised 0.5. (Pixel recall would say 1/4.)
    scores = np.array([[[2, 9, 0, 1, 1, 1, -1]]], dtype=np.float32)
    c = count_pixels(mask, scores)
    assert aupro(c.neg.sum(0), region_shares(c.regions), 0.3) == pytest.approx(0.5)
    # with B scored highest too, both regions are found before any false positive: perfect
    scores2 = np.array([[[2, 9, 0, 5, 5, 5, -1]]], dtype=np.float32)
    c2 = count_pixels(mask, scores2)
    assert aupro(c2.neg.sum(0), region_shares(c2.regions), 0.3) == pytest.approx(1.0)
    # regions are counted per connected component: pixels 3-5 are one region, not three
    assert len(c.regions) == 2 and sorted(c.regions.sum(1)) == [1, 3]


def test_aupro_interpolates_inside_a_segment():
    # a tie: the defect pixel and one normal pixel share score 1, so the curve jumps along a
    # slope from (0, 0) to (0.5, 1); PRO(0.3) = 0.6, area 0.3 * 0.6 / 2 = 0.09, normalised 0.3
    mask = np.array([[[1, 0, 0]]], dtype=bool)
    scores = np.array([[[1, 1, 0]]], dtype=np.float32)
    c = count_pixels(mask, scores)
    assert aupro(c.neg.sum(0), region_shares(c.regions), 0.3) == pytest.approx(0.3)


def test_binned_pixel_auroc_is_exact_with_few_values_and_close_with_many():
    rng = np.random.default_rng(0)
    masks = rng.random((4, 20, 20)) < 0.2
    few = np.round(rng.random((4, 20, 20)) + masks * 0.3, 1).astype(np.float32)
    c = count_pixels(masks, few)
    assert auroc_from_counts(c.neg.sum(0), c.pos.sum(0)) == pytest.approx(
        roc_auc_score(masks.ravel(), few.ravel()), abs=1e-12
    )
    many = (rng.random((4, 20, 20)) + masks * 0.3).astype(np.float32)
    c = count_pixels(masks, many, bins=200)
    assert auroc_from_counts(c.neg.sum(0), c.pos.sum(0)) == pytest.approx(
        roc_auc_score(masks.ravel(), many.ravel()), abs=5e-3
    )


def _toy_test_set(copies: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.tile(np.array([0] * 6 + [1] * 6), copies)
    scores = labels * 0.6 + rng.random(len(labels))
    masks = np.zeros((len(labels), 8, 8), dtype=bool)
    masks[labels == 1, 2:5, 2:5] = True
    maps = rng.random(masks.shape).astype(np.float32) + masks * 0.5
    return labels, scores, masks, maps


def test_bootstrap_interval_contains_estimate_and_narrows_with_more_images():
    widths = []
    for copies in (1, 4):
        labels, scores, masks, maps = _toy_test_set(copies)
        counts = count_pixels(masks, maps)
        ci = bootstrap(labels, scores, np.arange(len(labels)), counts, 1000, 0, 0.3)
        point = roc_auc_score(labels, scores)
        assert ci["image_auroc"][0] <= point <= ci["image_auroc"][1]
        pix = auroc_from_counts(counts.neg.sum(0), counts.pos.sum(0))
        assert ci["pixel_auroc"][0] <= pix <= ci["pixel_auroc"][1]
        pro = aupro(counts.neg.sum(0), region_shares(counts.regions), 0.3)
        assert ci["aupro"][0] <= pro <= ci["aupro"][1]
        widths.append(ci["image_auroc"][1] - ci["image_auroc"][0])
    assert widths[1] < 0.7 * widths[0]


def test_resamples_are_stratified_and_seeded():
    labels = np.array([0, 0, 0, 1, 1])
    a, b = stratified_resamples(labels, 50, 3), stratified_resamples(labels, 50, 3)
    assert np.array_equal(a, b)
    assert all((labels[r] == 0).sum() == 3 and (labels[r] == 1).sum() == 2 for r in a)


def test_reweighting_matches_equation_7():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(50, 4)).astype(np.float32)
    patches = rng.normal(size=(6, 4)).astype(np.float32)
    nearest = NearestBank(bank)
    dist, nn = nearest.search(patches, 1)
    got = reweighted_image_score(nearest, patches, dist[:, 0], nn[:, 0], b=5)
    # direct: the most anomalous test patch, its nearest bank patch m*, and m*'s 5 nearest bank patches
    d_all = np.linalg.norm(patches[:, None] - bank[None], axis=2)
    j = int(np.argmax(d_all.min(1)))
    m_star = int(np.argmin(d_all[j]))
    support = np.argsort(np.linalg.norm(bank - bank[m_star], axis=1))[:5]
    s_star = d_all[j, m_star]
    expected = (1 - np.exp(s_star) / np.exp(d_all[j, support]).sum()) * s_star
    assert got == pytest.approx(expected, rel=1e-5)
    assert 0 < got < s_star
    assert reweighted_image_score(nearest, patches, dist[:, 0], nn[:, 0], b=0) == pytest.approx(s_star, rel=1e-6)


def test_resampled_aurocs_equal_sklearn_per_resample_ties_included():
    from sklearn.metrics import roc_auc_score

    from patchcore.core.metrics import resampled_image_aurocs

    rng = np.random.default_rng(5)
    labels = np.array([0] * 12 + [1] * 20)
    scores = np.round(rng.normal(size=32) + labels, 1)  # rounded: many tied scores across the classes
    picks = stratified_resamples(labels, 200, 3)
    got = resampled_image_aurocs(labels, scores, picks)
    expected = [roc_auc_score(labels[p], scores[p]) for p in picks]
    assert np.allclose(got, expected, rtol=0, atol=1e-12) and len(set(np.round(got, 6))) > 20


def _regions_8(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """Connected components by flood fill over the 8 neighbours (MVTec's 3 x 3 structuring element)."""
    seen = np.zeros_like(mask, dtype=bool)
    out = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start], stack, region = True, [start], []
        while stack:
            y, x = stack.pop()
            region.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    q = (y + dy, x + dx)
                    if 0 <= q[0] < mask.shape[0] and 0 <= q[1] < mask.shape[1] and mask[q] and not seen[q]:
                        seen[q] = True
                        stack.append(q)
        out.append(region)
    return out


def _mvtec_aupro(masks: np.ndarray, maps: np.ndarray, max_fpr: float) -> float:
    """MVTec AD's definition, from scratch: at every distinct score t, FPR = share of normal pixels >= t
    and PRO = mean over regions of the share of the region >= t; the curve from (0, 0) to (1, 1),
    cut at max_fpr by linear interpolation, integrated by trapezoids and divided by max_fpr."""
    normal = maps[~masks]
    regions = [np.array([amap[p] for p in region]) for mask, amap in zip(masks, maps) for region in _regions_8(mask)]
    points = [(0.0, 0.0), (1.0, 1.0)]
    for t in np.unique(maps):
        points.append((float(np.mean(normal >= t)), float(np.mean([np.mean(r >= t) for r in regions]))))
    points.sort()
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:
            y1, x1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0), max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    return area / max_fpr


def test_aupro_regions_are_8_connected_as_mvtec_evaluation_code():
    # two defect pixels touching at a corner are one region: found together, PRO jumps 0 -> 1
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, 1, 1] = mask[0, 2, 2] = True
    c = count_pixels(mask, np.zeros((1, 4, 4), dtype=np.float32))
    assert len(c.regions) == 1 and c.regions.sum() == 2
    # random masks of thin diagonal strokes, where 4- and 8-connected regions differ, against the definition
    rng = np.random.default_rng(7)
    masks = np.zeros((3, 24, 24), dtype=bool)
    for m in masks:
        for _ in range(4):
            y, x, d = rng.integers(0, 18), rng.integers(0, 18), rng.choice([-1, 1])
            for k in range(6):
                m[y + k, x + (k if d == 1 else 5 - k)] = True
    maps = np.round(rng.random(masks.shape) + 0.6 * masks * rng.random(masks.shape), 2).astype(np.float32)
    c = count_pixels(masks, maps)
    ours = aupro(c.neg.sum(0), region_shares(c.regions), 0.3)
    assert ours == pytest.approx(_mvtec_aupro(masks, maps, 0.3), abs=1e-9)
    four = sum(ndimage.label(m)[1] for m in masks)
    assert four > len(c.regions), "the test masks must tell 4- from 8-connectivity apart"
