"""MVTec AD 2's private test sets: the submission folder its benchmark server takes, written and checked.

The server scores test_private and test_private_mixed from one folder (packed as
``<folder>.tar.gz``), laid out as the owners' checker script requires:

- ``anomaly_images/<object>/<split>/NNN_<kind>.tiff``: each image's anomaly map, one channel,
  float16, at the image's own size;
- ``anomaly_images_thresholded/<object>/<split>/NNN_<kind>.png``: the same maps binarised
  (0 normal, 255 anomalous); without them the server's SegF1 and ClassF1 are 0.

``<kind>`` is ``regular`` in test_private and ``mixed`` in test_private_mixed; NNN runs from 000
without gaps, as many as the object's split holds. Nothing else may be in the folder.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from patchcore.datasets.images import load_rgb, readable
from patchcore.datasets.layout import is_image_file
from patchcore.datasets.mvtec_ad2 import OBJECTS, SPLITS
from patchcore.errors import UsageError, optional
from patchcore.model.loaded import Model

MAPS, MASKS = "anomaly_images", "anomaly_images_thresholded"


def expected_names(obj: str, split: str, suffix: str, counts: dict[str, int] = OBJECTS) -> list[str]:
    return [f"{i:03d}_{SPLITS[split]}{suffix}" for i in range(counts[obj])]


def write_entry(folder: Path, obj: str, split: str, index: int, amap: np.ndarray, threshold: float | None) -> None:
    """One image's map (and its binarised mask when a threshold is given) into the submission folder."""
    tifffile = optional("tifffile", "writing MVTec AD 2's submission", "benchmarks")

    stem = f"{index:03d}_{SPLITS[split]}"
    maps = folder / MAPS / obj / split
    maps.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(maps / f"{stem}.tiff", np.asarray(amap, dtype=np.float16))
    if threshold is not None:
        masks = folder / MASKS / obj / split
        masks.mkdir(parents=True, exist_ok=True)
        # at or above, as evaluate and the runtime decide a region
        Image.fromarray(np.where(np.asarray(amap) >= threshold, 255, 0).astype(np.uint8)).save(masks / f"{stem}.png")


def _names(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()} if path.is_dir() else set()


def problems(folder: Path, counts: dict[str, int] = OBJECTS, read_files: bool = True) -> list[str]:
    """What the server's checker would refuse in ``folder``, one line each (empty: ready to pack and upload)."""
    tifffile = optional("tifffile", "checking MVTec AD 2's submission", "benchmarks")

    found: list[str] = []
    folder = Path(folder)
    extra = _names(folder) - {MAPS, MASKS}
    if not (folder / MAPS).is_dir():
        return [f"{folder}: no {MAPS}/ folder (every private image needs its map)"]
    found += [f"{folder / name}: not part of a submission; remove it" for name in sorted(extra)]
    parts = [(MAPS, ".tiff")] + ([(MASKS, ".png")] if (folder / MASKS).is_dir() else [])
    for top, suffix in parts:
        objects = _names(folder / top)
        found += [f"{folder / top}: object {o} missing" for o in sorted(set(counts) - objects)]
        found += [f"{folder / top / o}: not an MVTec AD 2 object; remove it" for o in sorted(objects - set(counts))]
        for obj in sorted(set(counts) & objects):
            splits = _names(folder / top / obj)
            found += [f"{folder / top / obj}: split {s} missing" for s in sorted(set(SPLITS) - splits)]
            found += [f"{folder / top / obj / s}: not a private split; remove it" for s in sorted(splits - set(SPLITS))]
            for split in sorted(set(SPLITS) & splits):
                where = folder / top / obj / split
                want, have = set(expected_names(obj, split, suffix, counts)), _names(where)
                if want - have:
                    found.append(f"{where}: {len(want - have)} of {len(want)} files missing, first {min(want - have)}")
                if have - want:
                    found.append(f"{where}: {len(have - want)} unexpected files, first {min(have - want)}; remove them")
                if read_files:
                    for name in sorted(want & have):
                        found += _file_problems(where / name, suffix, tifffile, Image)
    return found


def _file_problems(path: Path, suffix: str, tifffile, image_module) -> list[str]:
    try:
        if suffix == ".tiff":
            values = tifffile.imread(path)
            if values.ndim != 2 or values.dtype != np.float16:
                return [f"{path}: {values.dtype} of shape {values.shape}; the server takes one float16 channel"]
            if not np.isfinite(values).all():
                return [f"{path}: holds NaN or infinite values"]
            return []
        with image_module.open(path) as opened:
            values = np.asarray(opened)
        if values.ndim != 2 or not set(np.unique(values).tolist()) <= {0, 255}:
            return [f"{path}: the server takes one channel of 0 (normal) and 255 (anomalous)"]
        return []
    except Exception as exc:  # any unreadable file is one line, never a traceback
        return [f"{path}: unreadable ({exc.__class__.__name__})"]


def write_scenario(folder: Path, obj: str, data_root: Path, model: Model, pixel_threshold: float | None) -> int:
    """Every private image of one scenario scored by its model, its map (and mask at ``pixel_threshold``) written."""
    written = 0
    for split, kind in SPLITS.items():
        images = sorted(p for p in (data_root / split).iterdir() if is_image_file(p))
        for path in tqdm(images, desc=f"{obj} {split}", unit="image"):
            named = re.fullmatch(rf"(\d{{3}})_{kind}", path.stem)
            if named is None:
                raise UsageError(
                    f"{path}: not a {split} image's name (NNN_{kind}.png); rebuild the data with 'dvc repro -f -s download'"
                )
            index = int(named.group(1))
            with readable(path, "the data folder is damaged: rebuild it with 'dvc repro -f -s download'"):
                image = load_rgb(path)
            result = model.score([image])[0]
            write_entry(folder, obj, split, index, result.omap, pixel_threshold)
            written += 1
    return written


def pack(folder: Path) -> Path:
    """``<folder>.tar.gz`` with every member under ``<folder name>/``, as the owners' packing script makes it."""
    archive = folder.with_name(folder.name + ".tar.gz")
    partial = archive.with_name(archive.name + ".part")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    partial.replace(archive)
    return archive
