"""Stage `download`: materialise one category of a data set under data/<dataset>/<category>/."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from . import archive, sources
from .atomic import atomic_dir
from .dataset import list_split
from .errors import UsageError


def check_images(root: Path) -> None:
    """Decode every image and mask fully, so a corrupt file fails here rather than mid-extraction."""
    samples = list_split(root, "train") + list_split(root, "test")
    files = [s.path for s in samples] + [s.mask for s in samples if s.mask]
    for rel in tqdm(files, desc="check images", leave=False):
        try:
            with Image.open(root / rel) as image:
                image.load()
        except Exception as exc:  # PIL raises many types for bad files
            raise UsageError(f"{root / rel}: not a readable image ({exc.__class__.__name__}); replace or remove it") from None


def run(dataset: str, category: str, target: Path) -> Path:
    src = sources.source(dataset, category)
    archive_path = sources.local_archive(src)
    archive.verify(archive_path, src.sha256)
    with atomic_dir(target) as tmp:
        extracted = archive.unpack(archive_path, src.member_root, tmp / "unpacked")
        check_images(extracted)
        # Move the category's content up to the temporary root, which then becomes the target.
        for child in extracted.iterdir():
            os.replace(child, tmp / child.name)
        extracted.rmdir()
        (tmp / "unpacked").rmdir()
    return target
