"""Each benchmark's own figures, beside the MVTec AD ones every category gets: chosen by where the data came from."""

from __future__ import annotations

from pathlib import Path

from patchcore.pipeline.ad2_metrics import ad2_metrics
from patchcore.pipeline.loco_metrics import loco_metrics
from patchcore.pipeline.scored import Scored


def owners_figures(
    source: str | None, s: Scored, data_root: Path, pixel_quantile: float, full: dict, max_fpr: float
) -> dict:
    """{benchmark: its figures} for MVTec LOCO AD and MVTec AD 2 (VisA's owners use MVTec AD's); else empty.
    ``full``: evaluate's full-size pixel metrics (AU-PRO up to 0.05 and ``max_fpr``), reused, not recomputed."""
    if source == "mvtec_loco":
        return {"mvtec_loco": loco_metrics(s, data_root)}
    if source == "mvtec_ad2":
        return {"mvtec_ad2": ad2_metrics(s, data_root, pixel_quantile, full, max_fpr)}
    return {}
