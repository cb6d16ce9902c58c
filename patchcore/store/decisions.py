"""Decisions as files: binary masks and raw anomaly maps at the original size, and evaluate's regions.json."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from patchcore.store.atomic import atomic_dir, atomic_path, write_json

UNITS = "pixels of the original image: x, y top-left, width, height, area; max_score in anomaly-map units"


def mask_png(path: Path, mask: np.ndarray) -> None:
    """A binary mask as an 8-bit PNG, 255 where defective (as MVTec AD's ground truth)."""
    with atomic_path(path, ".png") as tmp:
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="png")


def raw_map(path: Path, omap: np.ndarray, fmt: str) -> None:
    """The float32 anomaly map as .npy or a 32-bit float TIFF (what the MVTec AD evaluation scripts read)."""
    with atomic_path(path, f".{fmt}") as tmp:
        if fmt == "npy":
            with open(tmp, "wb") as f:
                np.save(f, omap.astype(np.float32))
        else:
            Image.fromarray(omap.astype(np.float32), mode="F").save(tmp, format="tiff")


def mask_name(path: str) -> str:
    """A test image's mask file: its relative path flattened (test/crack/001.png -> test__crack__001.png)."""
    return path.rsplit(".", 1)[0].replace("/", "__") + ".png"


def write_decisions(
    plots: Path,
    pictures: Path,
    decided: Iterable[tuple[dict, np.ndarray | None]],
    n: int,
    thresholds: dict,
    reasons: dict,
) -> None:
    """plots/regions.json (every test image's verdict and regions) and pictures/masks/ (one PNG per image), masks/
    swapped in whole.

    ``thresholds``: the image ``threshold``, ``pixel_threshold`` and ``connectivity``; ``reasons``: why a null one is.
    """
    entries = []
    with atomic_dir(pictures / "masks") as tmp:
        for entry, mask in tqdm(decided, total=n, desc="regions", unit="image"):
            if mask is not None:
                entry["mask"] = (pictures / "masks" / mask_name(entry["image"])).as_posix()
                mask_png(tmp / mask_name(entry["image"]), mask)
            entries.append(entry)
        write_json(tmp / "index.json", {**thresholds, "images": [e["image"] for e in entries if "mask" in e]})
    doc: dict = {**thresholds, "units": UNITS, "images": entries}
    nulls = {k: reasons[k] for k in ("threshold", "pixel_threshold") if doc[k] is None}
    if nulls:
        doc["null_reasons"] = nulls
    write_json(plots / "regions.json", doc)
