"""Where each data set comes from, with the checksums its archives must have."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

@dataclass(frozen=True)
class ArchiveSource:
    """One archive holding one category in MVTec layout under ``member_root/``."""

    location: str  # a path relative to the project root (where dvc runs the stage) or an https URL
    sha256: str
    member_root: str
    notice: str  # the attribution/licence line that travels with the data


SAMPLE_NOTICE = 'Hazelnut Toy subset, Intel/anomalib, CC-BY-4.0 (see data/bundled/NOTICE.md)'

DATASETS: dict[str, dict[str, ArchiveSource]] = {
    # Real photographs shipped inside the repository so that `dvc repro` works offline.
    "sample": {
        "hazelnut_toy": ArchiveSource(
            location="data/bundled/hazelnut_toy.tar.gz",
            sha256="1c2ce50eb1035229f88e8beb5eaf7f664c02e8ba0deba162a9f1551c023528fb",
            member_root="hazelnut_toy",
            notice=SAMPLE_NOTICE,
        ),
    },
}


def source(dataset: str, category: str) -> ArchiveSource:
    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset '{dataset}' (params.yaml run.dataset); allowed: {', '.join(sorted(DATASETS))}")
    categories = DATASETS[dataset]
    if category not in categories:
        raise UsageError(
            f"unknown category '{category}' for dataset '{dataset}' (params.yaml run.categories); allowed: {', '.join(sorted(categories))}"
        )
    return categories[category]


def local_archive(src: ArchiveSource) -> Path:
    path = Path(src.location)
    if not path.is_file():
        raise UsageError(f"{path}: bundled archive missing; run from the project root, or restore it with 'git checkout -- {src.location}'")
    return path
