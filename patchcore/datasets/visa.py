"""VisA (Zou et al., ECCV 2022) in the project's MVTec layout, from its own one-class split file.

The archive holds each object's pictures under ``<object>/Data/Images/{Normal,Anomaly}`` and its
masks as class-index maps (0 background, 1..K defect classes); ``split_csv/1cls.csv`` says which
picture is for training and which for testing (``object,split,label,image,mask``, paths relative
to the archive's root). As the owners' preparation script does, a category becomes
``train/good``, ``test/good``, ``test/bad`` and ``ground_truth/bad/<stem>_mask.png``, every
non-zero mask value 255 in one channel. Every path in the split file stays inside the root.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from patchcore.datasets.layout import check_regular
from patchcore.errors import UsageError

SPLIT_FILE = "split_csv/1cls.csv"
CATEGORIES = (
    "candle",
    "capsules",
    "cashew",
    "chewinggum",
    "fryum",
    "macaroni1",
    "macaroni2",
    "pcb1",
    "pcb2",
    "pcb3",
    "pcb4",
    "pipe_fryum",
)
COLUMNS = ["object", "split", "label", "image", "mask"]
_FIX = "use the split file of the VisA archive (VisA_20220922.tar), unchanged"


def _inside(root: Path, text: str, where: str) -> Path:
    """A split-file path as a file under ``root``: relative, no '..', a regular file (a link only to one)."""
    rel = PurePosixPath(text)
    if not text or rel.is_absolute() or ".." in rel.parts or "\\" in text:
        raise UsageError(f"{where}: path {text!r} is not a plain path inside the VisA folder; {_FIX}")
    path = root.joinpath(*rel.parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise UsageError(f"{where}: {text} leads outside the VisA folder; {_FIX}")
    check_regular(path, f"{where} names it; {_FIX}")
    return path


def rows(root: Path, category: str) -> list[dict[str, str]]:
    """The split file's rows of one category, checked (one line naming the row when wrong)."""
    split_file = Path(root) / SPLIT_FILE
    if not split_file.is_file():
        raise UsageError(f"{split_file}: not found; the VisA folder holds it beside the object folders")
    with split_file.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if header != COLUMNS:
            raise UsageError(f"{split_file}: header {','.join(header)!r}, expected {','.join(COLUMNS)!r}; {_FIX}")
        kept = []
        for line, values in enumerate(reader, start=2):
            if len(values) != len(COLUMNS):
                raise UsageError(f"{split_file} line {line}: {len(values)} fields, expected {len(COLUMNS)}; {_FIX}")
            row = dict(zip(COLUMNS, values, strict=True))
            if row["object"] != category:
                continue
            if row["split"] not in ("train", "test") or row["label"] not in ("normal", "anomaly"):
                raise UsageError(f"{split_file} line {line}: split {row['split']!r}, label {row['label']!r}; {_FIX}")
            if (row["label"] == "anomaly") != bool(row["mask"]) or (
                row["label"] == "anomaly" and row["split"] == "train"
            ):
                raise UsageError(
                    f"{split_file} line {line}: a {row['split']} {row['label']} row with mask {row['mask']!r}; {_FIX}"
                )
            row["line"] = str(line)
            kept.append(row)
    if not any(r["split"] == "train" for r in kept):
        raise UsageError(f"{split_file}: no training rows for {category!r}; {_FIX}")
    return kept


def fill(root: Path, category: str, out: Path) -> dict[str, int]:
    """Write ``category`` into the (empty) folder ``out`` in MVTec layout; returns its counts."""
    root, counts = Path(root), {"train_good": 0, "test_good": 0, "test_defective": 0}
    for row in rows(root, category):
        where = f"{root / SPLIT_FILE} line {row['line']}"
        image = _inside(root, row["image"], where)
        kind = "good" if row["label"] == "normal" else "bad"
        folder = out / ("train" if row["split"] == "train" else "test") / kind
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / image.name).exists():
            raise UsageError(f"{where}: {image.name} is named twice in {row['split']}/{kind}; {_FIX}")
        shutil.copyfile(image, folder / image.name)
        key = "train_good" if row["split"] == "train" else "test_good" if kind == "good" else "test_defective"
        counts[key] += 1
        if kind == "bad":
            mask = _inside(root, row["mask"], where)
            try:
                with Image.open(mask) as opened:
                    values = np.asarray(opened)
            except (OSError, ValueError) as exc:
                raise UsageError(f"{mask}: unreadable mask ({exc.__class__.__name__}); {_FIX}") from None
            binary = np.where((values if values.ndim == 2 else values.max(axis=-1)) > 0, 255, 0).astype(np.uint8)
            (out / "ground_truth/bad").mkdir(parents=True, exist_ok=True)
            Image.fromarray(binary).save(out / "ground_truth/bad" / f"{image.stem}_mask.png")
    return counts
