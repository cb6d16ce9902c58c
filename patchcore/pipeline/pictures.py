"""What evaluate draws and decides per test image: the plot data, the ROC and map figures, and each image's verdict,
regions and mask at its original size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from patchcore.config import BackboneSettings
from patchcore.core.localization import roc_from_counts
from patchcore.datasets.images import load_rgb, network_view, readable
from patchcore.pipeline.pixel_metrics import PixelMetrics
from patchcore.pipeline.scored import Scored
from patchcore.runtime.patchcore_onnx import decide, verdict
from patchcore.store import figures, plot_data


def decided(
    s: Scored, backbone: BackboneSettings, threshold: float | None, pixel_threshold: float | None
) -> Iterator[tuple[dict, np.ndarray | None]]:
    """Per test image: its decision (verdict, regions in original pixels) and its mask at the original size."""
    for i, (path, value, hw) in enumerate(zip(s.paths, s.scores, s.sizes)):
        size = (int(hw[0]), int(hw[1]))
        entry, _, mask = decide(float(value), *s.views(i), size, threshold, pixel_threshold)
        yield {"image": path, **entry}, mask


def write_plots(
    plots: Path,
    pictures: Path,
    title: str,
    s: Scored,
    pixel: PixelMetrics,
    root: Path,
    bb: BackboneSettings,
    record: dict,
    threshold: float | None,
) -> None:
    """Plot data and figures into ``plots`` (in git), the pictures of the user's images into ``pictures``
    (DVC-cached)."""
    counts, mask_of = pixel.counts, pixel.mask_of
    curves = plot_data.image_curves(s.labels, s.scores)
    plot_data.write_curves(plots, {**curves, "pro": plot_data.pro_points(counts)})
    image_roc = ([r["fpr"] for r in curves["roc"]], [r["tpr"] for r in curves["roc"]])
    pixel_roc = roc_from_counts(counts.neg.sum(0), counts.pos.sum(0)) if counts is not None else None
    note = None if record["image_auroc"] is not None else record["null_reasons"]["image_auroc"]
    figures.roc_figure(
        plots / "roc.png", title, image_roc, record["image_auroc"], pixel_roc, record["pixel_auroc"], note
    )
    anomalous = None if threshold is None else [verdict(v, threshold) == "anomalous" for v in s.scores]
    plot_data.write_scores(plots / "scores.csv", list(s.paths), s.labels, s.scores, anomalous)
    order = np.argsort(-s.scores, kind="stable")
    chosen = list(order[:3]) + list(order[-3:][::-1]) if len(order) > 6 else list(order)
    # the network's view of each image; with whole and tiles, the image itself and its stitched map
    view = (lambda image: image) if bb.multi_view else network_view(bb)
    panels = []
    for i in chosen:
        said = "" if threshold is None else f" {verdict(s.scores[i], threshold)}"
        with readable(root / s.paths[i]):
            image = view(load_rgb(root / s.paths[i]))
        panels.append(
            {
                "image": image,
                "map": s.full_map(int(i)) if bb.multi_view else s.maps[i],
                "mask": mask_of.get(int(i)),
                "caption": f"{s.paths[i]}\nscore {s.scores[i]:.3f}{said}",
            }
        )
    vmax = float(np.quantile(s.maps, 0.999)) if len(s.maps) else 1.0
    figures.maps_figure(
        pictures / "maps.png", f"most (top) and least (bottom) anomalous test images\n{title}", panels, vmax
    )
