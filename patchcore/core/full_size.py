"""Pixel metrics at each test image's own size, as MVTec AD's evaluation code defines them.

Every pixel of every image counts, at the image's own resolution, and every distinct score is a
threshold (no bins): the PRO curve rises by 1 / (regions x region size) at a defect pixel and the
false-positive rate by 1 / (normal pixels) at a normal one, in order of falling score; points at
one score are merged into the last. Regions are 8-connected (a 3 x 3 structuring element), as
MVTec labels its ground truth. The curve is kept in float64 throughout (MVTec's code casts the
false-positive rate to float32, which moves the sixth digit on large sets).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from patchcore.core.localization import REGION_STRUCTURE, area_to


def _flat(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    for amap, mask in zip(maps, masks):
        if amap.shape != mask.shape:
            raise ValueError(f"an anomaly map of {amap.shape} against a mask of {mask.shape}")
    values = np.concatenate([np.asarray(m, dtype=np.float32).ravel() for m in maps]) if maps else np.zeros(0)
    truth = np.concatenate([np.asarray(m, dtype=bool).ravel() for m in masks]) if masks else np.zeros(0, bool)
    return values, truth


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float | None:
    """AUROC over every pixel of every image at its own size; None without both kinds of pixel."""
    values, truth = _flat(maps, masks)
    if not truth.any() or truth.all():
        return None
    return float(roc_auc_score(truth, values))


def pro_curve(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """(fpr, pro) from (0, 0), one point per distinct score from the highest down; None without a defect region
    or a normal pixel."""
    values, truth = _flat(maps, masks)
    share = np.zeros(len(values), dtype=np.float64)
    regions, start = 0, 0
    for mask in masks:
        labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=REGION_STRUCTURE)
        flat = labels.ravel()
        sizes = np.bincount(flat)
        inside = flat > 0
        share[start : start + len(flat)][inside] = 1.0 / sizes[flat[inside]]
        regions, start = regions + n, start + len(flat)
    return overlap_curve(values, truth, share, regions)


def overlap_curve(
    values: np.ndarray, truth: np.ndarray, share: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(fpr, mean overlap) from (0, 0), one point per distinct score from the highest down: the false-positive rate
    over the pixels outside ``truth``, and the sum of the flagged pixels' ``share`` over ``count`` (regions for PRO,
    defects for sPRO). None without a region or a normal pixel."""
    normal = int((~truth).sum())
    if count == 0 or normal == 0:
        return None
    order = np.argsort(-values, kind="stable")
    fpr = np.cumsum(~truth[order], dtype=np.float64) / normal
    overlap = np.cumsum(share[order]) / count
    last = np.append(values[order][1:] != values[order][:-1], True)  # the last point at each score
    return np.r_[0.0, np.minimum(fpr[last], 1.0)], np.r_[0.0, np.minimum(overlap[last], 1.0)]


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], max_fpr: float) -> float | None:
    """The area under the PRO curve up to ``max_fpr``, divided by max_fpr (1.0 is perfect)."""
    curve = pro_curve(maps, masks)
    return None if curve is None else area_to(curve[0], curve[1], max_fpr)


def seg_f1(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], threshold: float) -> float | None:
    """F1 of the pixels at or above ``threshold`` against the ground truth, pooled over every image (MVTec AD 2's
    SegF1); None without a defect pixel."""
    values, truth = _flat(maps, masks)
    if not truth.any():
        return None
    flagged = values >= threshold
    tp = int((flagged & truth).sum())
    return 2 * tp / (int(flagged.sum()) + int(truth.sum()))
