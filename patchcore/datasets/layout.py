"""The MVTec AD folder layout: which images a category holds, their labels and masks."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patchcore.errors import UsageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
GOOD = "good"
VALIDATION = "validation"  # good images apart from train and test (MVTec AD 2, LOCO): what thresholds are set on
PROVENANCE = "provenance.json"  # where the download stage's copy came from (beside train/ and test/)
_JUNK = {"__MACOSX", "Thumbs.db", "desktop.ini"}


def read_provenance(root: Path) -> dict:
    """Where a category's images came from, as the download stage recorded it; a folder made by other
    means says that its source is unknown."""
    path = Path(root) / PROVENANCE
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return {"source": None, "location": str(root)}
    except (OSError, ValueError, TypeError, RecursionError) as exc:
        raise UsageError(
            f"{path}: unreadable ({exc.__class__.__name__}); rebuild the data with 'dvc repro -f -s download'"
        ) from None


def check_regular(path: Path, fix: str) -> None:
    """The one rule for links and special files: a symbolic link is followed to what it points at, which
    must be a regular file; FIFOs, devices and sockets are never opened (a FIFO would hang the read, a
    link to /dev/zero fill the disk); a broken or looping link is named in one line."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise UsageError(f"{path}: a broken symbolic link (to {os.readlink(path)}); {fix}") from None
        raise UsageError(f"{path}: not found; {fix}") from None
    except OSError as exc:
        raise UsageError(f"{path}: a symbolic link that cannot be followed ({exc.strerror}); {fix}") from None
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a folder"
        )
        raise UsageError(f"{path}: {kind}, not a regular file; {fix}")


def is_data_name(name: str) -> bool:
    """Hidden files and the junk that archivers and file browsers leave behind are not data."""
    return not name.startswith(".") and name not in _JUNK


def is_image_file(path: Path) -> bool:
    return path.is_file() and is_data_name(path.name) and path.suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the category root, POSIX style
    label: int  # 0 good, 1 defective
    defect: str  # "good" or the defect type
    mask: str  # relative mask path, "" when there is none


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def find_mask(root: Path, defect: str, stem: str) -> Path | None:
    """MVTec names masks ``<stem>_mask.png``; other sets (the bundled sample) use ``<stem>.png``."""
    for name in (f"{stem}_mask.png", f"{stem}.png"):
        candidate = root / "ground_truth" / defect / name
        if candidate.is_file():
            return candidate
    return None


def seeded_share(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded ``fraction`` of n items, at least one."""
    k = max(1, int(round(n * fraction)))
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def seeded_folds(n: int, k: int, seed: int) -> np.ndarray:
    """The fold (0 .. k-1) of each of n items, a seeded permutation cut into k near-equal parts;
    with fewer than k items each is its own fold (leave one out), and a single item has none (-1)."""
    folds = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return folds
    for fold, part in enumerate(np.array_split(np.random.default_rng(seed).permutation(n), min(k, n))):
        folds[part] = fold
    return folds


def subset(samples: list[Sample], fraction: float, seed: int = 0) -> list[Sample]:
    """A seeded subset of ``fraction`` of the samples (at least one), kept in path order."""
    if fraction >= 1.0:
        return list(samples)
    return [samples[i] for i in seeded_share(len(samples), fraction, seed)]


def list_split(root: Path, split: str) -> list[Sample]:
    """Samples of ``train``, ``test`` or ``validation`` (none when the category has no such folder) under a category
    root, sorted by path (so output rows are stable)."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"data folder {root} not found; run 'patchcore download' (or 'dvc repro') first")
    if split == "train":
        samples = [Sample(p.relative_to(root).as_posix(), 0, GOOD, "") for p in _images(root / "train" / GOOD)]
        if not samples:
            raise UsageError(f"{root / 'train' / GOOD}: no training images; PatchCore needs good images there")
        return samples
    if split == VALIDATION:
        return [Sample(p.relative_to(root).as_posix(), 0, GOOD, "") for p in _images(root / VALIDATION / GOOD)]
    if split != "test":
        raise ValueError(split)
    test = root / "test"
    defects = sorted(d.name for d in test.iterdir() if d.is_dir() and is_data_name(d.name)) if test.is_dir() else []
    samples = []
    for defect in defects:
        for image in _images(test / defect):
            if defect == GOOD:
                samples.append(Sample(image.relative_to(root).as_posix(), 0, GOOD, ""))
                continue
            mask = find_mask(root, defect, image.stem)
            # A defect type with a ground_truth folder must have every mask; one without has none,
            # and its images are left out of the pixel metrics (evaluate says so).
            if mask is None and (root / "ground_truth" / defect).is_dir():
                raise UsageError(
                    f"{image}: defect image without a mask; expected {root / 'ground_truth' / defect / (image.stem + '_mask.png')}"
                )
            rel_mask = mask.relative_to(root).as_posix() if mask is not None else ""
            samples.append(Sample(image.relative_to(root).as_posix(), 1, defect, rel_mask))
    # A category of good images alone (train/good, with or without test/good) is the cold start:
    # a model and its thresholds need no defect; evaluate reports AUROC as null with the reason.
    return sorted(samples, key=lambda s: s.path)


def validate_category(root: Path, decode) -> dict[str, int]:
    """Check a category before any feature is computed; return its image counts.

    ``decode(path)`` must fully decode an image and return its (width, height); it raises
    UsageError naming the file when the file is not a usable image.
    """
    train, test = list_split(root, "train"), list_split(root, "test")
    for sample in train + test:
        size = decode(root / sample.path)
        if sample.mask and (mask_size := decode(root / sample.mask)) != size:
            raise UsageError(
                f"{root / sample.mask}: mask size {mask_size} differs from its image's {size} ({sample.path}); fix or remove the mask"
            )
    return {
        "train_good": len(train),
        "test_good": sum(1 for s in test if s.label == 0),
        "test_defective": sum(1 for s in test if s.label == 1),
        "defect_types": len({s.defect for s in test if s.label == 1}),
        "masks": sum(1 for s in test if s.mask),
    }
