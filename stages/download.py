"""Stage `download`: materialise one category of a data set under data/<dataset>/<category>/.

Every source goes through the same steps: get the bytes (verified), unpack or copy them into
a temporary folder, check every image, then rename the folder into place.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from PIL import Image

from . import archive, fetch, sources
from .atomic import atomic_dir
from .dataset import JUNK, validate_category
from .errors import UsageError
from .images import MAX_PIXELS
from .sources import DatasetSpec


def cache_dir() -> Path:
    """Downloaded archives are kept here (outside the DVC outputs) so a rerun or resume reuses them."""
    return Path(os.environ.get("PATCHCORE_CACHE", "~/.cache/patchcore")).expanduser()


def decode_fully(path: Path) -> tuple[int, int]:
    """Decode the whole file (not just its header); return (width, height)."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise UsageError(f"{path}: {image.width} x {image.height} pixels is beyond the {MAX_PIXELS} pixel limit (a decompression bomb?); remove it or resize it")
            image.load()
            return image.size
    except UsageError:
        raise
    except Image.DecompressionBombError:
        raise UsageError(f"{path}: refused as a decompression bomb; remove it") from None
    except Exception as exc:  # PIL raises many types for bad files
        raise UsageError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc}); replace or remove it") from None


def _unpack_into(archive_path: Path, category: str, tmp: Path) -> None:
    extracted = archive.unpack(archive_path, category, tmp / ".unpacked")
    for child in extracted.iterdir():
        os.replace(child, tmp / child.name)
    shutil.rmtree(tmp / ".unpacked")


def _copy_into(folder: Path, tmp: Path) -> None:
    if not folder.is_dir():
        raise UsageError(f"{folder}: folder not found; it must hold train/good and test/<good|defect type> (MVTec layout)")
    ignore = shutil.ignore_patterns(".*", *JUNK)
    for child in sorted(folder.iterdir()):
        if child.name.startswith(".") or child.name in JUNK:
            continue
        if child.is_dir():
            shutil.copytree(child, tmp / child.name, ignore=ignore)
        else:
            shutil.copy2(child, tmp / child.name)


def _mvtec_local(path: Path, category: str, tmp: Path) -> None:
    if path.is_dir():
        _copy_into(path / category if (path / category).is_dir() else path, tmp)
    elif path.is_file():
        if path.name == sources.MVTEC_FULL_NAME:
            archive.verify(path, sources.MVTEC_FULL_SHA256)
        _unpack_into(path, category, tmp)  # a per-category archive is checked by its file counts
    else:
        raise UsageError(f"{path}: not found; set download.mvtec.path to the MVTec AD archive, a <category>.tar.xz or an extracted folder")


def _fill(spec: DatasetSpec, category: str, tmp: Path) -> None:
    if spec.source == "bundled":
        path, sha256 = sources.bundled_archive(category)
        archive.verify(path, sha256)
        _unpack_into(path, category, tmp)
    elif spec.source == "mvtec":
        if spec.path:
            _mvtec_local(Path(spec.path).expanduser(), category, tmp)
        else:
            url = sources.mvtec_category_url(category)
            _unpack_into(fetch.fetch(url, cache_dir() / "mvtec" / f"{category}.tar.xz"), category, tmp)
    elif spec.source == "url":
        name = Path(spec.url.split("?")[0]).name or "archive"
        _unpack_into(fetch.fetch(spec.url, cache_dir() / spec.name / name, spec.sha256), category, tmp)
    elif spec.source == "archive":
        path = Path(spec.path).expanduser()
        if not path.is_file():
            raise UsageError(f"{path}: archive not found; fix download.{spec.name}.path")
        if spec.sha256:
            archive.verify(path, spec.sha256)
        _unpack_into(path, category, tmp)
    else:  # folder
        _copy_into(Path(spec.path).expanduser() / category, tmp)


def _check_mvtec_counts(category: str, counts: dict[str, int]) -> None:
    expected = sources.MVTEC[category]
    for key in ("train_good", "test_good", "test_defective", "defect_types"):
        if counts[key] != getattr(expected, key):
            raise UsageError(
                f"MVTec AD {category}: {counts[key]} {key.replace('_', ' ')} found, the published data set has {getattr(expected, key)}; "
                f"the copy is incomplete or altered: delete it (and {cache_dir() / 'mvtec'}) and download again"
            )


def run(spec: DatasetSpec, category: str, target: Path) -> dict[str, int]:
    """Materialise ``category`` of ``spec`` at ``target``; nothing is left behind on failure."""
    sources.check_category(spec, category)
    try:
        with atomic_dir(target) as tmp:
            _fill(spec, category, tmp)
            counts = validate_category(tmp, decode_fully)
            if spec.source == "mvtec":
                _check_mvtec_counts(category, counts)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise UsageError(f"disk full while writing {target} ({exc.filename or ''}); free space and run again") from None
        raise
    return counts
