"""MVTec AD 2, VisA and MVTec LOCO AD: one category taken from the owners' archive (or a local copy) into the
project's layout, with the licence it comes under."""

from __future__ import annotations

import shutil
from pathlib import Path

from patchcore.config import DatasetSpec
from patchcore.datasets import archive, fetch, loco, mvtec_ad2, visa
from patchcore.datasets.fetch import file_sha256
from patchcore.datasets.layout import is_image_file
from patchcore.datasets.local_copy import copy_into
from patchcore.datasets.sources import BENCHMARKS
from patchcore.errors import UsageError


def _archive(spec: DatasetSpec, cache: Path) -> tuple[str, Path, str]:
    """The owners' archive: ``path`` when it names a file (checked against the published digest when it is the owners'
    file by name), else downloaded from ``urls`` or the known links and checked."""
    known = BENCHMARKS[spec.source]
    if spec.path:
        path = Path(spec.path).expanduser()
        if path.name == known.archive:
            archive.verify(path, known.sha256, f"download it again from {known.urls[0]}")
            return str(path), path, known.sha256
        return str(path), path, file_sha256(path)
    links = tuple(spec.urls) if spec.urls else known.urls
    location, path = fetch.fetch_first(
        links, cache / spec.source / known.archive, known.sha256, f"download.{spec.name}.urls", not spec.urls
    )
    return location, path, known.sha256


def _copy(folder: Path, names: tuple[str, ...], tmp: Path) -> Path:
    """A local, unpacked copy: its category (and, for VisA, the split files) copied in, links checked."""
    for name in names:
        copy_into(folder / name, tmp / name, f"the unpacked folder of the owners' archive holds {name}/")
    return tmp / names[0]


def _unpacked(spec: DatasetSpec, category: str, tmp: Path, cache: Path) -> tuple[dict, Path]:
    names = (category, "split_csv") if spec.source == "visa" else (category,)
    title = BENCHMARKS[spec.source].title
    path = Path(spec.path).expanduser() if spec.path else None
    if path is not None and path.is_dir():
        if not (path / category).is_dir():
            raise UsageError(
                f"{path}: no '{category}' folder; set download.{spec.name}.path to the unpacked {title} folder that holds "
                "the categories (or to its archive)"
            )
        return {"location": str(path), "member": category, "sha256": None}, _copy(path, names, tmp)
    if path is not None and not path.is_file():
        raise UsageError(
            f"{path}: not found; set download.{spec.name}.path to the {title} archive or its unpacked folder"
        )
    location, file, sha256 = _archive(spec, cache)
    fix = (
        f"replace it with a good copy (download.{spec.name}.path points at it)"
        if path
        else f"delete the downloaded {file} and run again to fetch it anew"
    )
    root = archive.unpack(file, category, tmp, fix, also=names[1:], nested=True)
    return {"location": location, "member": category, "sha256": sha256}, root


def fill(spec: DatasetSpec, category: str, tmp: Path, cache: Path) -> dict:
    """Put ``category`` of a benchmark into the empty folder ``tmp`` in the project's layout; return where it came
    from, its licence and the counts its own splits add (validation, private test sets, defects)."""
    known = BENCHMARKS[spec.source]
    found, root = _unpacked(spec, category, tmp / ".unpacked", cache)
    try:
        extra = _convert(spec.source, category, root, tmp)
    except UsageError as exc:  # name the user's file: inside their folder, or the archive's member
        named = str(tmp / ".unpacked") + ("" if found["sha256"] is None else "/")
        raise UsageError(
            str(exc).replace(named, found["location"] + ("" if found["sha256"] is None else ":"))
        ) from None
    shutil.rmtree(tmp / ".unpacked")
    return {**found, "benchmark": known.title, "licence": known.licence, "page": known.page, "splits": extra}


def _convert(source: str, category: str, root: Path, tmp: Path) -> dict[str, int]:
    """The unpacked ``root`` of a category arranged in ``tmp``; the counts of the splits beside train and test."""
    if source == "visa":
        visa.fill(root.parent, category, tmp)
        return {}
    if source == "mvtec_loco":
        return loco.arrange(root, tmp)
    extra = mvtec_ad2.arrange(root, tmp)
    for split in mvtec_ad2.SPLITS:
        if extra[split] != mvtec_ad2.OBJECTS[category]:
            raise UsageError(
                f"MVTec AD 2 {category}: {extra[split]} images in {split}, the published data set has "
                f"{mvtec_ad2.OBJECTS[category]}; the copy is incomplete or altered: unpack it again"
            )
    return extra


def extra_images(root: Path) -> list[Path]:
    """The images outside train/ and test/ that a benchmark keeps (validation, private test sets): decoded too."""
    folders = ("validation/good", *mvtec_ad2.SPLITS)
    return [
        p
        for folder in folders
        if (root / folder).is_dir()
        for p in sorted((root / folder).iterdir())
        if is_image_file(p)
    ]
