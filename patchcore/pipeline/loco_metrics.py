"""MVTec LOCO AD's results, as its owners' evaluation code computes them: structural and logical anomalies apart,
each against every good test image, and their mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from patchcore.core import spro
from patchcore.core.metrics import image_auroc
from patchcore.datasets import loco
from patchcore.datasets.layout import GOOD
from patchcore.pipeline.scored import Scored

LIMITS = {"au_spro_005": 0.05, "au_spro_03": 0.3}  # the owners report 0.05; 0.3 as MVTec AD's AU-PRO


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _one_type(s: Scored, data_root: Path, anomaly_type: str, types: dict) -> dict:
    rows = [i for i, d in enumerate(s.defects) if d in (GOOD, anomaly_type)]
    maps = [s.full_map(i) for i in rows]
    defects = [
        [] if s.labels[i] == 0 else loco.defect_channels(data_root, anomaly_type, Path(s.paths[i]).stem, types)
        for i in rows
    ]
    labels = s.labels[rows]
    peaks = np.array([m.max() for m in maps])  # the owners' image score: the map's highest value
    both = 0 < labels.sum() < len(labels)
    return {
        "images": len(rows),
        "defective_images": int(labels.sum()),
        "defects": sum(len(d) for d in defects),
        "image_auroc": _rounded(image_auroc(labels, peaks)) if both else None,
        **{name: _rounded(spro.au_spro(maps, defects, limit)) for name, limit in LIMITS.items()},
    }


def loco_metrics(s: Scored, data_root: Path) -> dict:
    """Image AUROC (on each map's highest value) and AU-sPRO at FPR 0.05 and 0.3, per anomaly type and their mean."""
    types = loco.read_defect_types(data_root)
    result: dict = {
        "image_score": "the highest value of each anomaly map at the image's own size (the owners' evaluation code)",
        "saturation": f"per defect type from {loco.CONFIG}",
    }
    for anomaly_type in loco.ANOMALY_TYPES:
        result[anomaly_type] = _one_type(s, data_root, anomaly_type, types)
    keys = ("image_auroc", *LIMITS)
    parts = [result[t] for t in loco.ANOMALY_TYPES]
    result["mean"] = {
        k: None if any(p[k] is None for p in parts) else _rounded(float(np.mean([p[k] for p in parts]))) for k in keys
    }
    return result
