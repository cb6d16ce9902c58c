"""Stage `evaluate`: score the test patches against the bank and compute AUROC."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from . import h5io
from .images import load_mask
from .metrics import image_auroc, pixel_auroc
from .params import BackboneSettings, EvaluateSettings
from .scoring import NearestBank, anomaly_map, image_score


def score_images(test_h5: Path, bank_h5: Path, settings: EvaluateSettings, size: int):
    """Per-image scores and anomaly maps, one image's patches at a time."""
    with h5py.File(bank_h5, "r") as b:
        nearest = NearestBank(b["bank"][()])
        bank = {"bank_size": int(b["bank"].shape[0]), "coreset_ratio": float(b.attrs["coreset_ratio"]), "train_patches": int(b.attrs["train_patches"])}
    with h5py.File(test_h5, "r") as f:
        h, w = (int(v) for v in f.attrs["grid"])
        per_image = h * w
        n = f["labels"].shape[0]
        images_per_query = max(1, settings.query_batch // per_image)
        scores = np.zeros(n, dtype=np.float64)
        maps = np.zeros((n, size, size), dtype=np.float32)
        for first in tqdm(range(0, n, images_per_query), desc="evaluate", unit="batch"):
            last = min(n, first + images_per_query)
            dist = nearest.distances(f["patches"][first * per_image : last * per_image]).reshape(last - first, h, w)
            for i, patch_scores in enumerate(dist):
                scores[first + i] = image_score(patch_scores)
                maps[first + i] = anomaly_map(patch_scores, size, settings.blur_sigma)
        info = {
            "labels": f["labels"][()],
            "masks": h5io.read_strings(f["masks"]),
            "paths": h5io.read_strings(f["paths"]),
            "attrs": dict(f.attrs),
        }
    return scores, maps, info, bank


def run(test_h5: Path, bank_h5: Path, data_root: Path, backbone: BackboneSettings, settings: EvaluateSettings) -> dict:
    scores, maps, info, bank = score_images(test_h5, bank_h5, settings, backbone.crop)
    labels = info["labels"]
    attrs = info["attrs"]
    # Defective images without a mask cannot be scored per pixel; good images are all-negative.
    pixel_rows = [i for i, (label, mask) in enumerate(zip(labels, info["masks"])) if label == 0 or mask]
    masks = np.stack([load_mask(Path(data_root) / info["masks"][i] if info["masks"][i] else None, backbone) for i in pixel_rows])
    skipped = sorted({info["paths"][i].split("/")[1] for i in set(range(len(labels))) - set(pixel_rows)})
    return {
        "dataset": str(attrs["dataset"]),
        "category": str(attrs["category"]),
        "backbone": backbone.name,
        "weights": str(attrs["weights"]),
        "image_auroc": round(image_auroc(labels, scores), 6),
        "pixel_auroc": None if (p := pixel_auroc(masks, maps[pixel_rows])) is None else round(p, 6),
        "pixel_skipped_defect_types": skipped,
        "test_images": int(len(labels)),
        "defective_images": int(labels.sum()),
        "masks_used": int(sum(1 for m in info["masks"] if m)),
        "train_fraction": float(attrs["train_fraction"]),
        **bank,
        "blur_sigma": settings.blur_sigma,
    }
