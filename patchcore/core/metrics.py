"""Detection and localisation metrics (pure array code)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

from patchcore.core.localization import aupro, auroc_from_counts, region_shares


def image_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(np.asarray(labels, dtype=np.int8), np.asarray(scores, dtype=np.float64)))


def image_ap(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of the image scores (defective = positive): the step-wise area under the PR curve, no
    interpolation."""
    return float(average_precision_score(np.asarray(labels, dtype=np.int8), np.asarray(scores, dtype=np.float64)))


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float | None:
    """AUROC over every pixel of every test image; None when no pixel is defective."""
    truth = np.asarray(masks, dtype=bool).ravel()
    if not truth.any() or truth.all():
        return None
    return float(roc_auc_score(truth, np.asarray(maps, dtype=np.float32).ravel()))


def resampled_image_aurocs(labels: np.ndarray, scores: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Image AUROC of every resample at once, by the rank-sum (Mann-Whitney) form of the AUROC.

    The same number as roc_auc_score (ties count one half), without sklearn's input checks,
    which cost more than the AUROC itself when repeated for a thousand resamples.
    """
    labels = np.asarray(labels)[picks]
    positive = labels == 1
    n_pos = positive.sum(axis=1)
    n_neg = labels.shape[1] - n_pos
    ranks = rankdata(np.asarray(scores, dtype=np.float64)[picks], axis=1)  # ties share their mean rank
    u = np.where(positive, ranks, 0.0).sum(axis=1) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def stratified_resamples(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n, images) image indices: each resample draws good and defective images separately,
    with replacement, keeping both counts, so every resample can be scored."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    good, bad = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    return np.concatenate([rng.choice(good, (n, len(good))), rng.choice(bad, (n, len(bad)))], axis=1)


def interval(values: list[float | None], level: float = 0.95) -> list[float] | None:
    kept = np.array([v for v in values if v is not None], dtype=np.float64)
    if len(kept) == 0:
        return None
    tail = (1.0 - level) / 2 * 100
    return [round(float(np.percentile(kept, tail)), 6), round(float(np.percentile(kept, 100 - tail)), 6)]


def bootstrap(labels, scores, pixel_rows, counts, n: int, seed: int, max_fpr: float) -> dict[str, list[float] | None]:
    """95% percentile intervals of image AUROC, pixel AUROC and AUPRO over image resamples.

    ``counts`` (localization.PixelCounts) covers the images listed in ``pixel_rows``.
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    samples: dict[str, list[float | None]] = {"image_auroc": [], "pixel_auroc": [], "aupro": []}
    shares = region_shares(counts.regions) if counts is not None else None
    picks = stratified_resamples(labels, n, seed)
    samples["image_auroc"] = [float(v) for v in resampled_image_aurocs(labels, scores, picks)]
    for pick in picks:
        if counts is None:
            continue
        w = np.bincount(pick, minlength=len(labels))[pixel_rows].astype(np.float64)
        neg, pos = w @ counts.neg, w @ counts.pos
        samples["pixel_auroc"].append(auroc_from_counts(neg, pos))
        assert shares is not None  # set whenever counts are
        samples["aupro"].append(aupro(neg, shares, max_fpr, weights=w[counts.region_image]))
    return {k: interval(v) for k, v in samples.items()}
