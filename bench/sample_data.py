"""Bench data from the bundled photos: a category whose training set is enlarged by flips and rotations."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def build_category(dest: Path, variants: int, suffix: str = ".png") -> int:
    """Test images and masks as bundled; each training photo in ``variants`` (1-8) flips/rotations."""
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(REPO / "data/bundled/hazelnut_toy.tar.gz") as tar:
            tar.extractall(tmp, filter="data")
        src = Path(tmp) / "hazelnut_toy"
        shutil.copytree(src / "test", dest / "test")
        shutil.copytree(src / "ground_truth", dest / "ground_truth")
        (dest / "train/good").mkdir(parents=True)
        n = 0
        for photo in sorted((src / "train/good").iterdir()):
            with Image.open(photo) as im:
                im = im.convert("RGB")
                for k, op in enumerate([None, *Image.Transpose][:variants]):
                    (im if op is None else im.transpose(op)).save(dest / "train/good" / f"{photo.stem}_{k}{suffix}")
                    n += 1
    return n
