"""Pixel-level metrics from per-image score histograms: pixel AUROC, AUPRO and their bootstrap.

Every image's anomaly map is reduced once to counts per score bin (its normal pixels, its
defect pixels, and each connected defect region). Sums of these counts give the ROC and
PRO curves of any resample of the test images, so a 1000-fold bootstrap costs matrix
products instead of 1000 passes over millions of pixels. When the maps hold fewer distinct
values than bins, every distinct value is a threshold and the results are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# MVTec AD's evaluation code (pro_curve_util.py) labels each ground-truth mask with a 3 x 3
# structuring element of ones: pieces touching only at a corner are one defect region.
REGION_STRUCTURE = np.ones((3, 3), dtype=bool)


def thresholds(maps: np.ndarray, bins: int) -> np.ndarray:
    """Ascending score thresholds: all distinct values if few, else evenly spaced quantiles."""
    values = np.unique(np.asarray(maps, dtype=np.float32))
    if len(values) <= bins:
        return values
    return np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins)).astype(np.float32))


@dataclass(frozen=True)
class PixelCounts:
    thresholds: np.ndarray  # (T,) ascending
    neg: np.ndarray  # (images, T) normal pixels per bin
    pos: np.ndarray  # (images, T) defect pixels per bin
    regions: np.ndarray  # (regions, T) pixels of each connected defect region per bin
    region_image: np.ndarray  # (regions,) which image each region belongs to


def count_pixels(masks: np.ndarray, maps: np.ndarray, bins: int = 1000) -> PixelCounts:
    """Bin every pixel: bin i holds scores s with thresholds[i] <= s < thresholds[i + 1]."""
    edges = thresholds(maps, bins)
    t = len(edges)
    neg, pos, regions, owner = [], [], [], []
    for i, (mask, amap) in enumerate(zip(masks, maps)):
        idx = np.clip(np.searchsorted(edges, amap.astype(np.float32), side="right") - 1, 0, t - 1)
        mask = np.asarray(mask, dtype=bool)
        neg.append(np.bincount(idx[~mask], minlength=t))
        pos.append(np.bincount(idx[mask], minlength=t))
        labels, n = ndimage.label(mask, structure=REGION_STRUCTURE)
        for r in range(1, n + 1):
            regions.append(np.bincount(idx[labels == r], minlength=t))
            owner.append(i)
    return PixelCounts(
        edges,
        np.array(neg, dtype=np.int64),
        np.array(pos, dtype=np.int64),
        np.array(regions, dtype=np.int64).reshape(-1, t),
        np.array(owner, dtype=np.int64),
    )


def _at_or_above(hist: np.ndarray) -> np.ndarray:
    """Counts of scores >= each threshold (suffix sums along the last axis)."""
    return np.flip(np.cumsum(np.flip(hist, -1), -1), -1)


def auroc_from_counts(neg: np.ndarray, pos: np.ndarray) -> float | None:
    """AUROC from binned counts (ties within a bin count one half)."""
    n_neg, n_pos = neg.sum(), pos.sum()
    if n_neg == 0 or n_pos == 0:
        return None
    below = np.concatenate([[0], np.cumsum(neg)[:-1]])
    return float((pos * (below + 0.5 * neg)).sum() / (n_neg * n_pos))


def roc_from_counts(neg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) from high to low thresholds, starting at (0, 0)."""
    return np.r_[0.0, (_at_or_above(neg) / neg.sum())[::-1]], np.r_[0.0, (_at_or_above(pos) / pos.sum())[::-1]]


def region_shares(regions: np.ndarray) -> np.ndarray:
    """(regions, T): the share of each region at or above each threshold."""
    return _at_or_above(regions) / np.maximum(regions.sum(axis=1, keepdims=True), 1)


def pro_curve(neg: np.ndarray, shares: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, pro) from high to low thresholds, starting at (0, 0).

    PRO is the (weighted) mean over defect regions of the share of the region at or above
    the threshold, so a small defect counts as much as a large one.
    """
    fpr = _at_or_above(neg) / max(neg.sum(), 1)
    w = np.ones(len(shares)) if weights is None else np.asarray(weights, dtype=np.float64)
    pro = (w @ shares) / w.sum()
    return np.concatenate([[0.0], fpr[::-1]]), np.concatenate([[0.0], pro[::-1]])


def aupro(neg: np.ndarray, shares: np.ndarray, max_fpr: float = 0.3, weights: np.ndarray | None = None) -> float | None:
    """Area under the PRO curve for FPR in [0, max_fpr], divided by max_fpr (1.0 is perfect).

    ``shares`` comes from region_shares(); ``weights`` count each region (bootstrap resamples).
    """
    if len(shares) == 0 or neg.sum() == 0 or (weights is not None and np.sum(weights) == 0):
        return None
    fpr, pro = pro_curve(neg, shares, weights)
    return area_to(fpr, pro, max_fpr)


def area_to(fpr: np.ndarray, pro: np.ndarray, max_fpr: float) -> float:
    """The area under a (fpr, pro) curve from (0, 0) up to ``max_fpr`` (interpolated there), divided by max_fpr."""
    # Both rise along the curve; equal fpr values are vertical steps, which add no area.
    i = int(np.searchsorted(fpr, max_fpr, side="left"))  # points [0, i) lie below max_fpr
    if i >= len(fpr):  # the curve ends before max_fpr: its last point holds on to it
        return float(np.trapezoid(np.append(pro, pro[-1]), np.append(fpr, max_fpr)) / max_fpr)
    x0, y0, x1, y1 = fpr[i - 1], pro[i - 1], fpr[i], pro[i]
    end = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0) if x1 > x0 else y1
    x = np.append(fpr[:i], max_fpr)
    y = np.append(pro[:i], end)
    return float(np.trapezoid(y, x) / max_fpr)
