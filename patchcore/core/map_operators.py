"""The anomaly map's upsampling and Gaussian blur as matrices (pure array code).

Both steps are linear and separable, so the map of an (h, w) grid of patch scores is
``rows @ grid @ cols.T`` with rows (S, h) and cols (S, w): the form an exported graph computes
with two matrix products. scoring.anomaly_map stays the reference; these operators are built
from the same taps and from scipy's own filter, so they are that computation, not a copy of it.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from patchcore.core.scoring import bilinear_taps


def resize_operator(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): bilinear resizing with half-pixel centres (align_corners=False), as scoring.upsample."""
    low, high, weight = bilinear_taps(n_in, n_out)
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.arange(n_out), low), 1.0 - weight)
    np.add.at(out, (np.arange(n_out), high), weight)
    return out


def blur_operator(size: int, sigma: float) -> np.ndarray:
    """(size, size): scipy's gaussian_filter along one axis (mode reflect, truncate 4), applied to the identity."""
    eye = np.eye(size)
    return eye if sigma <= 0 else gaussian_filter1d(eye, sigma, axis=0, mode="reflect", truncate=4.0)


def map_operators(grid: tuple[int, int], size: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """rows (size, h) and cols (size, w), float64: anomaly_map(g) == rows @ g @ cols.T up to float32 rounding."""
    blur = blur_operator(size, sigma)
    return blur @ resize_operator(grid[0], size), blur @ resize_operator(grid[1], size)
