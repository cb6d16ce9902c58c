"""The test set's pixel-level metrics: on the network's view of each image (as the paper's code) and at each image's
own size (as MVTec's evaluation code), with their bootstrap intervals."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from patchcore.config import BackboneSettings, EvaluateSettings
from patchcore.core import full_size, records
from patchcore.core.localization import PixelCounts, aupro, count_pixels, region_shares
from patchcore.core.metrics import bootstrap, pixel_auroc
from patchcore.datasets.images import load_full_mask, network_mask, readable
from patchcore.pipeline.scored import Scored

SMALL_DEFECT_FPR = 0.05  # MVTec AD 2 integrates the PRO curve up to this false-positive rate


class PixelMetrics(NamedTuple):
    """The test set's pixel-level results; defective images without a mask are left out of them.

    ``auroc`` and ``aupro`` are None where no test image has a defect pixel; ``intervals`` holds the bootstrap's
    95% intervals by metric name; ``counts`` the per-threshold pixel counts (None without a defect pixel);
    ``mask_of`` maps a test image's row to its (H, W) boolean ground truth at the network's resolution
    (good images all False, unmasked defects absent). The first figures are on the network's view of each image
    (resized and centre-cropped), as the paper's code computes them; ``full_size`` holds MVTec's definition.
    """

    auroc: float | None
    aupro: float | None
    intervals: dict
    counts: PixelCounts | None
    mask_of: dict[int, np.ndarray]
    aupro_005: float | None  # AU-PRO up to a false-positive rate of 0.05 (MVTec AD 2's limit), network view
    full_size: dict  # pixel_auroc, aupro, aupro_005, seg_f1 at each image's own size (MVTec's definition)


def pixel_metrics(
    s: Scored, data_root: Path, backbone: BackboneSettings, settings: EvaluateSettings, pixel_threshold: float | None
) -> PixelMetrics:
    """Pixel AUROC, AUPRO and bootstrap intervals, on the network's view and at full size (there also the
    segmentation F1 at ``pixel_threshold``); defective images without a mask are left out."""
    n = len(s.labels)
    pixel_rows = np.array([i for i in range(n) if s.labels[i] == 0 or s.masks[i]], dtype=np.int64)
    masks, full_masks = [], []  # each mask read once: in the network's view and at its image's own size
    for i in pixel_rows:
        size = (int(s.sizes[i][0]), int(s.sizes[i][1]))
        with readable(data_root / s.masks[i]):
            full_masks.append(load_full_mask(data_root / s.masks[i], size) if s.masks[i] else np.zeros(size, bool))
        if not backbone.multi_view:  # whole and tiles: the network sees no one view of the image to measure on
            masks.append(network_mask(full_masks[-1], backbone))
    counts = pix = pro = pro_small = None
    if masks and np.any(masks):  # a good-only category has no defect pixel to measure
        pixel_masks, pixel_maps = np.stack(masks), s.maps[pixel_rows]
        counts = count_pixels(pixel_masks, pixel_maps)
        pix = pixel_auroc(pixel_masks, pixel_maps)
        pro = aupro(counts.neg.sum(0), region_shares(counts.regions), settings.max_fpr)
        pro_small = aupro(counts.neg.sum(0), region_shares(counts.regions), SMALL_DEFECT_FPR)
    both = records.no_auroc(s.labels) is None
    intervals = (
        bootstrap(s.labels, s.scores, pixel_rows, counts, settings.bootstrap, settings.seed, settings.max_fpr)
        if settings.bootstrap and both
        else {}
    )
    # good images all-false; unmasked defects absent; at the network's view, or at full size for whole and tiles
    mask_of = {int(i): m for i, m in zip(pixel_rows, full_masks if backbone.multi_view else masks)}
    full = _full_size(s, pixel_rows, full_masks, settings.max_fpr, pixel_threshold)
    return PixelMetrics(pix, pro, intervals, counts, mask_of, pro_small, full)


def _full_size(
    s: Scored,
    rows: np.ndarray,
    masks: list[np.ndarray],
    max_fpr: float,
    pixel_threshold: float | None,
) -> dict:
    """The pixel metrics at each image's own size: its map taken back as predict and the masks take it (0 outside
    the crop; tiles stitched), against ``masks``, the rows' masks as the data set holds them."""
    maps = [s.full_map(int(i)) for i in rows]

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 6)

    return {
        "pixel_auroc": rounded(full_size.pixel_auroc(maps, masks)),
        "aupro": rounded(full_size.aupro(maps, masks, max_fpr)),
        "aupro_005": rounded(full_size.aupro(maps, masks, SMALL_DEFECT_FPR)),
        "seg_f1": None if pixel_threshold is None else rounded(full_size.seg_f1(maps, masks, pixel_threshold)),
    }
