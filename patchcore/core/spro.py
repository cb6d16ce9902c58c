"""sPRO and AU-sPRO, MVTec LOCO AD's localisation metric (Bergmann et al., IJCV 2022), on binned pixel counts.

A LOCO ground truth gives every defect its own mask (one PNG per defect), and each defect type
a saturation threshold: once that many of the defect's pixels are above the threshold, the
defect counts as found. That suits logical anomalies, whose extent is ill-defined (a missing
part: any of it flagged finds it). As the owners' evaluation code defines it:

- a defect's saturation area is ``min(threshold, area)`` for an absolute threshold (pixels) and
  ``int(threshold * area)`` for a relative one (a share of the defect's area);
- its sPRO at a threshold is ``min(TP / saturation area, 1)``, TP its pixels scored above;
- the mean sPRO averages every defect of every image alike (not per image);
- the false-positive rate counts the pixels outside every defect of an image, over all images;
- AU-sPRO integrates mean sPRO over the FPR up to a limit and divides by the limit.

The counts are localization.count_pixels's bins, so every distinct map value is a threshold
(exact) when the maps hold few; the owners' code samples thresholds and refines the curve to a
set distance, which agrees within that distance.
"""

from __future__ import annotations

import numpy as np

from patchcore.core.localization import _at_or_above, area_to


def saturation_area(defect_area: int, threshold: float, relative: bool) -> int:
    """Pixels of a defect that must be found for its sPRO to reach 1."""
    if relative:
        return int(threshold * defect_area)
    return int(min(threshold, defect_area))


def defect_counts(channels: list[np.ndarray], amap: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(defects, T): each defect mask's pixels per score bin (bin i: edges[i] <= score < edges[i + 1])."""
    idx = np.clip(np.searchsorted(edges, amap.astype(np.float32), side="right") - 1, 0, len(edges) - 1)
    return np.array([np.bincount(idx[np.asarray(c, bool)], minlength=len(edges)) for c in channels], np.int64).reshape(
        -1, len(edges)
    )


def saturated_shares(counts: np.ndarray, saturation: np.ndarray) -> np.ndarray:
    """(defects, T): each defect's sPRO at or above each threshold."""
    saturation = np.asarray(saturation, dtype=np.float64)[:, None]
    if np.any(saturation <= 0):
        raise ValueError("every defect needs a saturation area of at least one pixel")
    return np.minimum(_at_or_above(counts) / saturation, 1.0)


def au_spro(neg: np.ndarray, shares: np.ndarray, max_fpr: float = 0.05) -> float | None:
    """Area under the mean-sPRO curve for FPR in [0, max_fpr], divided by max_fpr (1.0 is perfect).

    ``neg``: (images, T) or (T,) pixels outside every defect per bin; ``shares``: saturated_shares.
    """
    neg = np.asarray(neg).reshape(-1, shares.shape[1]).sum(axis=0)
    if len(shares) == 0 or neg.sum() == 0:
        return None
    fpr = _at_or_above(neg) / neg.sum()
    spro = shares.mean(axis=0)
    return area_to(np.r_[0.0, fpr[::-1]], np.r_[0.0, spro[::-1]], max_fpr)
