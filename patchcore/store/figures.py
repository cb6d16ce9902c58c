"""PNG pictures people look at: ROC curves and anomaly maps over their images."""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from patchcore.store.atomic import atomic_path


@functools.cache
def _pyplot():
    """matplotlib's figure machinery, loaded by the figures that need it: the colour maps
    alone (predict's heatmaps) do not, and pyplot takes most of a second to import."""
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> None:
    with atomic_path(out, ".png") as tmp:
        # no timestamps or software tags in the file: same figure, same bytes
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    _pyplot().close(fig)


def heat_overlay(image: Image.Image, amap: np.ndarray, vmax: float) -> np.ndarray:
    """The image with the anomaly map in the jet colours over it, as uint8 RGB."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    heat = matplotlib.colormaps["jet"](np.clip(amap / max(vmax, 1e-12), 0.0, 1.0))[..., :3]
    return (np.clip(0.55 * base + 0.45 * heat, 0, 1) * 255).astype(np.uint8)


def roc_figure(
    out: Path,
    title: str,
    image_roc: tuple,
    image_auc: float | None,
    pixel_roc: tuple | None,
    pixel_auc: float | None,
    note: str | None = None,
) -> None:
    """ROC curves; ``note`` (why there is no image ROC, e.g. a good-only category) is written on the chart instead."""
    fig, ax = _pyplot().subplots(figsize=(5, 5))
    if image_auc is not None:
        ax.plot(*image_roc, label=f"image, AUROC {image_auc:.4f}")
    if pixel_roc is not None:
        ax.plot(*pixel_roc, label=f"pixel, AUROC {pixel_auc:.4f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(textwrap.fill(title, 70), fontsize=8)
    if note:
        ax.text(0.5, 0.55, textwrap.fill(f"no image ROC: {note}", 40), ha="center", va="center", fontsize=9)
    if image_auc is not None or pixel_roc is not None:
        ax.legend(loc="lower right")
    fig.tight_layout()
    _save(fig, out)


def maps_figure(out: Path, title: str, panels: list[dict], vmax: float) -> None:
    """panels: dicts with image (PIL, network view), map, mask (bool or None), caption."""
    if not panels:
        fig, ax = _pyplot().subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no test images to show", ha="center", va="center")
        fig.suptitle("\n".join(textwrap.fill(line, 70) for line in title.splitlines()), fontsize=8)
        _save(fig, out)
        return
    cols = max(1, len(panels) // 2) if len(panels) > 3 else len(panels)
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = _pyplot().subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, panel in zip(axes.ravel(), panels):
        ax.imshow(heat_overlay(panel["image"], panel["map"], vmax))
        if panel["mask"] is not None and panel["mask"].any():
            ax.contour(panel["mask"].astype(float), levels=[0.5], colors="white", linewidths=1.2)
        ax.set_title(panel["caption"], fontsize=8)
    fig.suptitle("\n".join(textwrap.fill(line, 110) for line in title.splitlines()), fontsize=9)
    fig.tight_layout()
    _save(fig, out)


def save_overlay(out: Path, image: Image.Image, amap: np.ndarray, vmax: float) -> None:
    with atomic_path(out, ".png") as tmp:
        Image.fromarray(heat_overlay(image, amap, vmax)).save(tmp, format="png")


def fraction_figure(out: Path, title: str, points: list, weights: dict[str, str]) -> None:
    """points: objects with backbone, fraction, auroc, ci95 (or None); one line per backbone (its weights in the
    legend), its 95% interval as a band."""
    fig, ax = _pyplot().subplots(figsize=(7, 4.8))
    for backbone in sorted({p.backbone for p in points}):
        mine = sorted((p for p in points if p.backbone == backbone and p.auroc is not None), key=lambda p: p.fraction)
        x = [p.fraction for p in mine]
        (line,) = ax.plot(
            x, [p.auroc for p in mine], marker="o", label=textwrap.fill(f"{backbone}: {weights.get(backbone, '?')}", 60)
        )
        banded = [p for p in mine if p.ci95 is not None]
        if banded:
            ax.fill_between(
                [p.fraction for p in banded],
                [p.ci95[0] for p in banded],
                [p.ci95[1] for p in banded],
                color=line.get_color(),
                alpha=0.18,
            )
    ax.set_xscale("log")
    ticks = sorted({p.fraction for p in points})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set(
        xlabel="share of train/good used (extract.train_fraction)", ylabel="image AUROC (band: 95% bootstrap interval)"
    )
    ax.set_title("\n".join(textwrap.fill(line, 90) for line in title.splitlines()), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    _save(fig, out)
