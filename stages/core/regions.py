"""Pixel decisions in the original image: its anomaly map, the mask above a threshold, defect regions.

The network sees each image resized and centre-cropped; its anomaly map covers that crop.
``box`` is the original image's extent in the crop's pixel coordinates (x0, y0, x1, y1), as
datasets.images.crop_box computes it from the transforms themselves. A pixel of the original
outside the crop was never seen by the network: its map value is 0 and it is never flagged.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# 8-connected regions (a 3 x 3 structuring element of ones), as the MVTec AD evaluation code labels defects
CONNECTIVITY = 8
_STRUCTURE = np.ones((3, 3), dtype=bool)


def _taps(n_src: int, start: float, stop: float, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear source cells and weights for n_out output pixels spanning [start, stop) of a source
    axis of n_src pixels (half-pixel centres, edges clamped), and which outputs fall inside it."""
    u = start + (np.arange(n_out, dtype=np.float64) + 0.5) * ((stop - start) / n_out)  # output centres in source pixels
    inside = (u >= 0.0) & (u < n_src)
    p = np.clip(u - 0.5, 0.0, n_src - 1)
    low = np.floor(p).astype(np.int64)
    high = np.minimum(low + 1, n_src - 1)
    return low, high, p - low, inside


def to_original(amap: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """The (S, S) map of the crop as a (height, width) map of the original image, bilinearly."""
    height, width = size
    x0, y0, x1, y1 = box
    ylo, yhi, wy, yin = _taps(amap.shape[0], y0, y1, height)
    xlo, xhi, wx, xin = _taps(amap.shape[1], x0, x1, width)
    a = np.asarray(amap, dtype=np.float64)
    rows = a[ylo] * (1.0 - wy)[:, None] + a[yhi] * wy[:, None]
    out = rows[:, xlo] * (1.0 - wx)[None, :] + rows[:, xhi] * wx[None, :]
    out[~yin, :] = 0.0
    out[:, ~xin] = 0.0
    return out.astype(np.float32)


def find_regions(omap: np.ndarray, threshold: float) -> tuple[np.ndarray, list[dict]]:
    """The mask of pixels at or above ``threshold`` and its 8-connected regions, the highest first.

    Each region: x, y (top-left pixel), width, height, area (pixels of the region itself) and
    max_score, all in the original image's pixels.
    """
    mask = omap >= threshold
    labels, n = ndimage.label(mask, structure=_STRUCTURE)
    if n == 0:
        return mask, []
    index = np.arange(1, n + 1)
    areas = ndimage.sum_labels(np.ones_like(omap, dtype=np.int64), labels, index)
    peaks = ndimage.maximum(omap, labels, index)
    regions = []
    for r, sl in enumerate(ndimage.find_objects(labels)):
        ys, xs = sl
        regions.append(
            {
                "x": int(xs.start),
                "y": int(ys.start),
                "width": int(xs.stop - xs.start),
                "height": int(ys.stop - ys.start),
                "area": int(areas[r]),
                "max_score": round(float(peaks[r]), 6),
            }
        )
    regions.sort(key=lambda g: (-g["max_score"], g["y"], g["x"]))
    return mask, regions


def verdict(score: float, threshold: float | None) -> str | None:
    """anomalous at or above the threshold, else good; None without a threshold."""
    return None if threshold is None else ("anomalous" if score >= threshold else "good")


def decide(score: float, amap: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int], threshold, pixel_threshold):
    """One image's decision, the same for evaluate and predict: its verdict and (with a pixel threshold)
    its regions, plus its map at the original (height, width) ``size`` and its mask (None without)."""
    omap = to_original(amap, box, size)
    entry: dict = {"score": round(float(score), 6), "verdict": verdict(score, threshold)}
    mask = None
    if pixel_threshold is not None:
        mask, entry["regions"] = find_regions(omap, pixel_threshold)
    return entry, omap, mask
