"""MVTec AD 2's figures on test_public, as its owners define them: AU-PRO integrated to an FPR of 0.05 (and 0.3),
SegF1 of the maps binarised at a threshold set on the validation split alone, and image AUROC on each map's highest
value. Both label-free pixel thresholds are reported side by side: the quantile of the validation maps' maxima (the
project's rule) and the mean + 3 std of their pixels (the owners' suggestion)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from patchcore.core import full_size, thresholds
from patchcore.core.metrics import image_auroc
from patchcore.datasets.images import load_full_mask, readable
from patchcore.pipeline.scored import Scored
from patchcore.runtime.patchcore_onnx import CONNECTIVITY

POOLING = (
    "SegF1 pools the pixels of every test_public image of the scenario (one F1 per scenario); the benchmark server's "
    "pooling is not published"
)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def ad2_metrics(s: Scored, data_root: Path, pixel_quantile: float, full: dict, max_fpr: float) -> dict:
    """``pixel_quantile``: evaluate.threshold's, the quantile of the validation maps' maxima; ``full``: the full-size
    pixel metrics evaluate already computed on the same maps and masks (their AU-PRO up to 0.05 and ``max_fpr``), so
    the sort over every test pixel is not done again."""
    if s.validation_pixels is None:
        return {"null_reason": "no validation split (validation/good): MVTec AD 2's thresholds come from it alone"}
    maps = [s.full_map(i) for i in range(len(s.labels))]
    masks = []
    for i, amap in enumerate(maps):
        with readable(data_root / s.masks[i]):
            masks.append(
                load_full_mask(data_root / s.masks[i], amap.shape) if s.masks[i] else np.zeros(amap.shape, bool)
            )
    rules = {
        "quantile": thresholds.pixel_threshold(s.held_map_max, pixel_quantile, CONNECTIVITY)[0],
        "validation_mean_3std": thresholds.mean_3std_threshold(s.validation_pixels, len(s.held_scores), CONNECTIVITY),
    }
    both = 0 < int(s.labels.sum()) < len(s.labels)
    return {
        "test": "test_public",
        "thresholds_from": f"validation/good ({len(s.held_scores)} images)",
        "au_pro_005": full["aupro_005"],
        "au_pro_03": full["aupro"] if max_fpr == 0.3 else _rounded(full_size.aupro(maps, masks, 0.3)),
        "image_auroc_map_max": _rounded(image_auroc(s.labels, np.array([m.max() for m in maps]))) if both else None,
        "seg_f1": {
            name: {
                "threshold": rule["threshold"],
                "seg_f1": _rounded(full_size.seg_f1(maps, masks, rule["threshold"])),
            }
            for name, rule in rules.items()
            if rule is not None
        },
        "seg_f1_pooling": POOLING,
        "validation_pixels": s.validation_pixels,
    }
