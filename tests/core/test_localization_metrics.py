"""AUPRO, pixel AUROC from counts, bootstrap intervals and Eq. 7 reweighting."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from stages.core.localization import (
    aupro,
    auroc_from_counts,
    count_pixels,
    region_shares,
)
from stages.core.metrics import bootstrap, stratified_resamples
from stages.core.scoring import NearestBank, reweighted_image_score


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
    assert auroc_from_counts(c.neg.sum(0), c.pos.sum(0)) == pytest.approx(roc_auc_score(masks.ravel(), few.ravel()), abs=1e-12)
    many = (rng.random((4, 20, 20)) + masks * 0.3).astype(np.float32)
    c = count_pixels(masks, many, bins=200)
    assert auroc_from_counts(c.neg.sum(0), c.pos.sum(0)) == pytest.approx(roc_auc_score(masks.ravel(), many.ravel()), abs=5e-3)


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

    from stages.core.metrics import resampled_image_aurocs

    rng = np.random.default_rng(5)
    labels = np.array([0] * 12 + [1] * 20)
    scores = np.round(rng.normal(size=32) + labels, 1)  # rounded: many tied scores across the classes
    picks = stratified_resamples(labels, 200, 3)
    got = resampled_image_aurocs(labels, scores, picks)
    expected = [roc_auc_score(labels[p], scores[p]) for p in picks]
    assert np.allclose(got, expected, rtol=0, atol=1e-12) and len(set(np.round(got, 6))) > 20
