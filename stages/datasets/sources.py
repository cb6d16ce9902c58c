"""Where each data set comes from: the bundled sample, MVTec AD, a URL, a local archive or folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import DatasetSpec
from ..errors import UsageError


@dataclass(frozen=True)
class BundledArchive:
    location: str  # relative to the project root, where dvc runs the stage
    sha256: str


# Real photographs shipped inside the repository so that `dvc repro` works offline.
BUNDLED = {
    "hazelnut_toy": BundledArchive("data/bundled/hazelnut_toy.tar.gz", "1c2ce50eb1035229f88e8beb5eaf7f664c02e8ba0deba162a9f1551c023528fb"),
    # crops of the same photos' nut surface with subtle pasted defects and exact masks (bench/make_surface.py)
    "hazelnut_surface": BundledArchive("data/bundled/hazelnut_surface.tar.gz", "7cb9172ec1b73d2de8fac15d5cb2959fca04af9da96da9a9f30d0c98877f8e0f"),
    # the same crops' good images alone (train + test/good): the cold start (bench/make_surface.py --good-only)
    "hazelnut_surface_good": BundledArchive(
        "data/bundled/hazelnut_surface_good.tar.gz", "edee8d8984e748f7a1b73a051d88a7d62b4f29fca205fd969efef3748242f387"
    ),
}


@dataclass(frozen=True)
class MVTecCategory:
    archive_id: str
    train_good: int
    test_good: int
    test_defective: int
    defect_types: int


# Bergmann et al., CVPR 2019. CC BY-NC-SA 4.0: downloaded by each user, never shipped here.
_SHARE = "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download"
MVTEC_FULL_NAME = "mvtec_anomaly_detection.tar.xz"
MVTEC_FULL_URL = f"{_SHARE}/420938113-1629952094/{MVTEC_FULL_NAME}"
MVTEC_FULL_SHA256 = "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d"
_PILL_SHARE = "https://www.mydrive.ch/shares/43421/11a215a5749fcfb75e331ddd5f8e43ee/download"
MVTEC = {
    "bottle": MVTecCategory("420937370-1629951468", 209, 20, 63, 3),
    "cable": MVTecCategory("420937413-1629951498", 224, 58, 92, 8),
    "capsule": MVTecCategory("420937454-1629951595", 219, 23, 109, 5),
    "carpet": MVTecCategory("420937484-1629951672", 280, 28, 89, 5),
    "grid": MVTecCategory("420937487-1629951814", 264, 21, 57, 5),
    "hazelnut": MVTecCategory("420937545-1629951845", 391, 40, 70, 4),
    "leather": MVTecCategory("420937607-1629951964", 245, 32, 92, 5),
    "metal_nut": MVTecCategory("420937637-1629952063", 220, 22, 93, 4),
    "pill": MVTecCategory("420938129-1629953099", 267, 26, 141, 7),
    "screw": MVTecCategory("420938130-1629953152", 320, 41, 119, 5),
    "tile": MVTecCategory("420938133-1629953189", 230, 33, 84, 5),
    "toothbrush": MVTecCategory("420938134-1629953256", 60, 12, 30, 1),
    "transistor": MVTecCategory("420938166-1629953277", 213, 60, 40, 4),
    "wood": MVTecCategory("420938383-1629953354", 247, 19, 60, 5),
    "zipper": MVTecCategory("420938385-1629953449", 240, 32, 119, 7),
}


def mvtec_category_url(category: str) -> str:
    share = _PILL_SHARE if category == "pill" else _SHARE
    return f"{share}/{MVTEC[category].archive_id}/{category}.tar.xz"


def known_categories(spec: DatasetSpec) -> tuple[str, ...] | None:
    """The categories a source can provide, or None when only the data itself can tell."""
    if spec.source == "bundled":
        return tuple(BUNDLED)
    if spec.source == "mvtec":
        return tuple(MVTEC)
    return None


def check_category(spec: DatasetSpec, category: str) -> None:
    known = known_categories(spec)
    if known is not None and category not in known:
        raise UsageError(f"unknown category '{category}' for dataset '{spec.name}' (params.yaml run.categories); allowed: {', '.join(known)}")


def bundled_archive(category: str) -> tuple[Path, str]:
    entry = BUNDLED[category]
    path = Path(entry.location)
    if not path.is_file():
        raise UsageError(f"{path}: bundled archive missing; run from the project root, or restore it with 'git checkout -- {entry.location}'")
    return path, entry.sha256
