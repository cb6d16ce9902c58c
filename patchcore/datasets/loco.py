"""MVTec LOCO AD's defect types: their saturation thresholds, read from the data set's defects_config.json.

Each entry names a defect type, the grey value its masks use, and how many of a defect's pixels
must be found for its sPRO to saturate (pixels, or a share of the defect with
``relative_saturation``). The owners' evaluation code checks the same ranges.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from patchcore.datasets.layout import check_regular, is_image_file
from patchcore.errors import UsageError

CONFIG = "defects_config.json"
DEFECTS = "defects"  # the owners' per-defect masks, <type>/<stem>/NNN.png, moved here from ground_truth/
_MAX_BYTES = 1 << 20  # a config is a few hundred bytes; a larger file is not one


def saturation_area(defect_area: int, threshold: float, relative: bool) -> int:
    """Pixels of a defect that must be found for its sPRO to reach 1 (the owners' evaluation code's rule)."""
    if relative:
        return int(threshold * defect_area)
    return int(min(threshold, defect_area))


class DefectType(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    defect_name: str = Field(min_length=1)
    pixel_value: int = Field(ge=1, le=255)
    saturation_threshold: float = Field(gt=0)
    relative_saturation: StrictBool

    @model_validator(mode="after")
    def _share_at_most_one(self) -> DefectType:
        if self.relative_saturation and self.saturation_threshold > 1:
            raise ValueError("a relative saturation_threshold is a share of the defect: at most 1")
        return self

    def saturation(self, defect_area: int) -> int:
        return saturation_area(defect_area, self.saturation_threshold, self.relative_saturation)


def read_defect_types(category_root: Path) -> dict[int, DefectType]:
    """Defect types of a LOCO category by their masks' grey value; one line naming the file and entry when wrong."""
    path = Path(category_root) / CONFIG
    fix = "restore it from the MVTec LOCO AD archive (or rebuild the data with 'dvc repro -f -s download')"
    if not path.exists():
        raise UsageError(f"{path}: not found; every MVTec LOCO AD category holds one: {fix}")
    check_regular(path, fix)
    if path.stat().st_size > _MAX_BYTES:
        raise UsageError(f"{path}: {path.stat().st_size} bytes is not a defects config; {fix}")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not JSON ({exc.__class__.__name__}); {fix}") from None
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{path}: expected a non-empty list of defect types; {fix}")
    types: dict[int, DefectType] = {}
    for k, entry in enumerate(entries):
        try:
            kind = DefectType.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "entry"
            raise UsageError(f"{path}: entry {k} {field}: {first['msg']}; {fix}") from None
        if kind.pixel_value in types:
            raise UsageError(f"{path}: entry {k}: pixel_value {kind.pixel_value} is used twice; {fix}")
        types[kind.pixel_value] = kind
    return types


CATEGORIES = ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")
ANOMALY_TYPES = ("logical_anomalies", "structural_anomalies")


def defect_channels(
    root: Path, anomaly_type: str, stem: str, types: dict[int, DefectType], folder: str = DEFECTS
) -> list[tuple[np.ndarray, int]]:
    """One test picture's defects: each ground-truth PNG's mask and its saturation area (pixels).

    LOCO keeps an image's defects apart: ``<type>/<stem>/000.png, 001.png, ...`` (the archive's
    ground_truth/, here under defects/), each holding one defect in its type's grey value and 0 elsewhere.
    """
    where = Path(root) / folder / anomaly_type / stem
    fix = "restore the folder from the MVTec LOCO AD archive"
    files = sorted(p for p in where.iterdir() if p.suffix.lower() == ".png") if where.is_dir() else []
    if not files:
        raise UsageError(f"{where}: no defect masks for test/{anomaly_type}/{stem}.png; {fix}")
    channels = []
    for path in files:
        check_regular(path, fix)
        try:
            with Image.open(path) as opened:
                values = np.asarray(opened)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: unreadable ({exc.__class__.__name__}); {fix}") from None
        grey = set(np.unique(values).tolist()) - {0}
        if values.ndim != 2 or len(grey) != 1:
            raise UsageError(f"{path}: a defect mask holds one grey value besides 0, this one {sorted(grey)}; {fix}")
        value = grey.pop()
        if value not in types:
            raise UsageError(f"{path}: grey value {value} is not in {CONFIG}; {fix}")
        mask = values == value
        channels.append((mask, types[value].saturation(int(mask.sum()))))
    return channels


def union_mask(channels: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """0/255 mask of every defect of a picture (what pixel AUROC, AU-PRO and the FPR of sPRO count as defective)."""
    union = np.zeros_like(channels[0][0])
    for mask, _ in channels:
        union |= mask
    return np.where(union, 255, 0).astype(np.uint8)


def arrange(category: Path, out: Path) -> dict[str, int]:
    """An unpacked LOCO category in the project's layout, moved (not copied) into the empty ``out``.

    train/, validation/ and test/ stay; the per-defect masks move to defects/ and each defective
    picture gets the union of its defects as ``ground_truth/<type>/<stem>_mask.png`` (0/255), the mask
    that pixel AUROC and AU-PRO count. One line naming the file when the config or a mask is wrong.
    """
    fix = "unpack the category again from the MVTec LOCO AD archive"
    for part in ("train/good", "validation/good", "test/good", *(f"test/{t}" for t in ANOMALY_TYPES)):
        if not (category / part).is_dir():
            raise UsageError(f"{category / part}: missing; an MVTec LOCO AD category holds it; {fix}")
    types = read_defect_types(category)
    counts = {"defects": 0}
    for anomaly_type in ANOMALY_TYPES:  # every mask checked where the user's copy holds it, before anything moves
        union = out / "ground_truth" / anomaly_type
        union.mkdir(parents=True)
        for image in sorted(p for p in (category / "test" / anomaly_type).iterdir() if is_image_file(p)):
            channels = defect_channels(category, anomaly_type, image.stem, types, "ground_truth")
            counts["defects"] += len(channels)
            Image.fromarray(union_mask(channels)).save(union / f"{image.stem}_mask.png")
    for part in ("train", "validation", "test", CONFIG):
        (category / part).rename(out / part)
    (category / "ground_truth").rename(out / DEFECTS)
    return counts
