"""sPRO and AU-sPRO, MVTec LOCO AD's localisation metric (Bergmann et al., IJCV 2022), on binned pixel counts.

A LOCO ground truth gives every defect its own mask (one PNG per defect), and each defect type
a saturation threshold: once that many of the defect's pixels are above the threshold, the
defect counts as found. That suits logical anomalies, whose extent is ill-defined (a missing
part: any of it flagged finds it). As the owners' evaluation code defines it:

- a defect's saturation area is ``min(threshold, area)`` for an absolute threshold (pixels) and
  ``int(threshold * area)`` for a relative one (a share of the defect's area): datasets/loco.py;
- its sPRO at a threshold is ``min(TP / saturation area, 1)``, TP its pixels scored above;
- the mean sPRO averages every defect of every image alike (not per image);
- the false-positive rate counts the pixels outside every defect of an image, over all images;
- AU-sPRO integrates mean sPRO over the FPR up to a limit and divides by the limit.

Every distinct score is a threshold, at each image's own size, as full_size's AU-PRO; the
owners' code samples thresholds and refines the curve to a set distance, which agrees with
this curve within that distance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from patchcore.core.full_size import overlap_curve
from patchcore.core.localization import area_to

Defects = Sequence[tuple[np.ndarray, int]]  # one image's defects: each mask and its saturation area (pixels)


def _shares(amap: np.ndarray, defects: Defects) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: its part of the summed sPRO once flagged, and whether it lies in a defect.

    A defect's sPRO at threshold t is min(found, saturation) / saturation; giving 1 / saturation to
    its ``saturation`` highest-scoring pixels alone makes the running sum equal that at every score."""
    flat = np.asarray(amap, dtype=np.float32).ravel()
    share = np.zeros(flat.shape, np.float64)
    inside = np.zeros(flat.shape, bool)
    for mask, saturation in defects:
        if saturation < 1:
            raise ValueError("every defect needs a saturation area of at least one pixel")
        where = np.flatnonzero(np.asarray(mask, bool).ravel())
        top = where[np.argsort(-flat[where], kind="stable")[:saturation]]
        share[top] += 1.0 / saturation
        inside[where] = True
    return share, inside


def curve(maps: Sequence[np.ndarray], defects: Sequence[Defects]) -> tuple[np.ndarray, np.ndarray] | None:
    """(fpr, mean sPRO) from (0, 0), one point per distinct score from the highest down; None without a defect or a
    pixel outside every defect. ``defects[i]`` are image i's defects (empty for a good image)."""
    parts = [_shares(amap, d) for amap, d in zip(maps, defects, strict=True)]
    count = sum(len(d) for d in defects)
    if not parts or count == 0:
        return None
    values = np.concatenate([np.asarray(m, dtype=np.float32).ravel() for m in maps])
    share = np.concatenate([p[0] for p in parts])
    inside = np.concatenate([p[1] for p in parts])
    return overlap_curve(values, inside, share, count)


def au_spro(maps: Sequence[np.ndarray], defects: Sequence[Defects], max_fpr: float = 0.05) -> float | None:
    """Area under the mean-sPRO curve for FPR in [0, max_fpr], divided by max_fpr (1.0 is perfect)."""
    points = curve(maps, defects)
    return None if points is None else area_to(points[0], points[1], max_fpr)
