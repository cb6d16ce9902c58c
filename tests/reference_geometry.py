"""The decision geometry stated independently of the copyable runtime, which the pipeline now imports.

- the crop box: the original image's corners moved through torchvision's own Resize and CenterCrop
  (torchvision moves boxes with images), not the runtime's arithmetic;
- map-back: scipy's map_coordinates at the output pixels' centres (order 1, edges clamped), zero
  outside the crop;
- regions: scipy's 8-connected labelling and its per-label statistics, not the runtime's union-find.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torchvision import tv_tensors
from torchvision.transforms import v2 as T


def torchvision_crop_box(resize: int, crop: int, interpolation: str, size: tuple[int, int]) -> tuple:
    """The original (height, width) = ``size`` as (x0, y0, x1, y1) in the crop's pixels; torchvision moves boxes in
    float32, so rounded to 1e-3 pixel."""
    height, width = size
    box = tv_tensors.BoundingBoxes(
        torch.tensor([[0.0, 0.0, width, height]], dtype=torch.float64),
        format="XYXY",
        canvas_size=size,
        clamping_mode=None,
    )
    steps = [T.Resize(resize, interpolation=T.InterpolationMode(interpolation), antialias=True), T.CenterCrop(crop)]
    moved = T.Compose(steps)(box)[0].tolist()
    return tuple(round(float(v), 3) for v in moved)


def map_back(amap: np.ndarray, box: tuple, size: tuple[int, int]) -> np.ndarray:
    """The crop's (S, S) map at the original (height, width): bilinear at each output pixel's centre."""
    height, width = size
    x0, y0, x1, y1 = box
    v = y0 + (np.arange(height) + 0.5) * (y1 - y0) / height  # output centres in the crop's pixels
    u = x0 + (np.arange(width) + 0.5) * (x1 - x0) / width
    rows, cols = np.meshgrid(v - 0.5, u - 0.5, indexing="ij")  # pixel i's centre is at i + 0.5
    out = ndimage.map_coordinates(amap.astype(np.float64), [rows, cols], order=1, mode="nearest")
    out[(v < 0) | (v >= amap.shape[0]), :] = 0.0
    out[:, (u < 0) | (u >= amap.shape[1])] = 0.0
    return out


def scipy_regions(omap: np.ndarray, threshold: float) -> tuple[np.ndarray, list[dict]]:
    """The mask at or above ``threshold`` and its 8-connected regions (bounding box, area, peak), highest first."""
    mask = omap >= threshold
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    index = np.arange(1, n + 1)
    areas = ndimage.sum_labels(np.ones_like(omap, dtype=np.int64), labels, index)
    peaks = ndimage.maximum(omap, labels, index)
    regions = []
    for r, (ys, xs) in enumerate(ndimage.find_objects(labels)):
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
