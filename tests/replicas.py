"""Tiny replicas of the benchmarks' archives, laid out as their owners lay them out, made of the bundled photos.

No real MVTec AD 2, VisA or LOCO file can be downloaded here; these hold the same folders, file
names and mask conventions, so the whole path (unpack, convert, extract, score, the owners' metrics)
runs on them. Defects are the sample's colour defects with their exact masks.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from patchcore.datasets.mvtec_ad2 import OBJECTS


def _png(source: Path, dest: Path, fmt: str = "PNG") -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.convert("RGB").save(dest, format=fmt)


def _pick(sample_root: Path, sub: str, n: int) -> list[Path]:
    return sorted((sample_root / sub).iterdir())[:n]


def _defects(sample_root: Path, n: int) -> list[tuple[Path, np.ndarray]]:
    """n defective photos and their masks (True on the defect)."""
    out = []
    for image in _pick(sample_root, "test/colour", n):
        mask = np.asarray(Image.open(sample_root / "ground_truth/colour" / f"{image.stem}.png")) > 0
        out.append((image, mask))
    return out


def mvtec_ad2(sample_root: Path, root: Path, scenario: str = "sheet_metal", train: int = 4) -> Path:
    """``root/mvtec_ad_2/<scenario>``: train, validation (good only), test_public with masks, the private sets."""
    base = root / "mvtec_ad_2" / scenario
    for k, image in enumerate(_pick(sample_root, "train/good", train + 2)):
        _png(image, base / ("train/good" if k < train else "validation/good") / f"{k:03d}_regular.png")
    for image in _pick(sample_root, "test/good", 1):
        _png(image, base / "test_public/good/000_regular.png")
    for k, (image, mask) in enumerate(_defects(sample_root, 2)):
        _png(image, base / f"test_public/bad/{k:03d}_overexposed.png")
        (base / "test_public/ground_truth/bad").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(
            base / f"test_public/ground_truth/bad/{k:03d}_overexposed_mask.png"
        )
    rng = np.random.default_rng(0)
    for split, kind in (("test_private", "regular"), ("test_private_mixed", "mixed")):
        (base / split).mkdir(parents=True)
        for k in range(OBJECTS[scenario]):  # the published count, as small pictures
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
                base / split / f"{k:03d}_{kind}.png"
            )
    return root / "mvtec_ad_2"


def visa(sample_root: Path, root: Path, category: str = "candle", extra_rows: str = "") -> Path:
    """``root/VisA``: the object's JPGs under Data/Images, class-index masks, split_csv/1cls.csv."""
    base = root / "VisA"
    lines = ["object,split,label,image,mask\n"]
    for k, image in enumerate(_pick(sample_root, "train/good", 5)):
        _png(image, base / category / f"Data/Images/Normal/{k:03d}.JPG", "JPEG")
        split = "train" if k < 4 else "test"
        lines.append(f"{category},{split},normal,{category}/Data/Images/Normal/{k:03d}.JPG,\n")
    for k, (image, mask) in enumerate(_defects(sample_root, 2)):
        _png(image, base / category / f"Data/Images/Anomaly/{k:03d}.JPG", "JPEG")
        (base / category / "Data/Masks/Anomaly").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.where(mask, 2, 0).astype(np.uint8)).save(base / category / f"Data/Masks/Anomaly/{k:03d}.png")
        lines.append(
            f"{category},test,anomaly,{category}/Data/Images/Anomaly/{k:03d}.JPG,{category}/Data/Masks/Anomaly/{k:03d}.png\n"
        )
    (base / "split_csv").mkdir(parents=True)
    (base / "split_csv/1cls.csv").write_text("".join(lines) + extra_rows)
    return base


LOCO_CONFIG = [
    {"defect_name": "missing_pushpin", "pixel_value": 255, "saturation_threshold": 1000, "relative_saturation": False},
    {"defect_name": "color", "pixel_value": 252, "saturation_threshold": 0.5, "relative_saturation": True},
]


def mvtec_loco(sample_root: Path, root: Path, category: str = "pushpins", config: list | None = None) -> Path:
    """``root/mvtec_loco_anomaly_detection/<category>``: one logical and one structural picture; the structural one's
    defect cut in two halves, two defects of another type, as LOCO keeps every defect in its own PNG."""
    base = root / "mvtec_loco_anomaly_detection" / category
    for k, image in enumerate(_pick(sample_root, "train/good", 6)):
        _png(image, base / ("train/good" if k < 4 else "validation/good") / f"{k:03d}.png")
    for k, image in enumerate(_pick(sample_root, "test/good", 2)):
        _png(image, base / f"test/good/{k:03d}.png")
    (logical, whole), (structural, mask) = _defects(sample_root, 2)
    _png(logical, base / "test/logical_anomalies/000.png")
    _png(structural, base / "test/structural_anomalies/000.png")
    columns = np.arange(mask.shape[1])[None, :]
    middle = int(np.flatnonzero(mask.any(axis=0)).mean())
    channels = {
        "logical_anomalies/000/000.png": np.where(whole, 255, 0),
        "structural_anomalies/000/000.png": np.where(mask & (columns < middle), 252, 0),
        "structural_anomalies/000/001.png": np.where(mask & (columns >= middle), 252, 0),
    }
    for name, values in channels.items():
        (base / "ground_truth" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(values.astype(np.uint8)).save(base / "ground_truth" / name)
    (base / "defects_config.json").write_text(json.dumps(LOCO_CONFIG if config is None else config))
    return root / "mvtec_loco_anomaly_detection"


def pack(folder: Path, archive: Path) -> Path:
    """``folder`` (and its name as the top folder) as a .tar.gz, as the owners ship it."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive
