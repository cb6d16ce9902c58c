"""Materialise one category of a data set in a folder (the download stage's work).

Every source goes through the same steps: get the bytes (verified), unpack or copy them into
a temporary folder, check every image, then rename the folder into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from pathlib import Path

from PIL import Image

from patchcore.config import DatasetSpec
from patchcore.datasets import archive, benchmarks, fetch, sources
from patchcore.datasets.fetch import file_sha256
from patchcore.datasets.images import check_pixels, readable
from patchcore.datasets.layout import PROVENANCE, validate_category
from patchcore.datasets.local_copy import copy_into
from patchcore.errors import WRITE_FIXES, UsageError
from patchcore.store.atomic import atomic_dir, write_json


def cache_dir() -> Path:
    """Downloaded archives are kept here (outside the DVC outputs) so a rerun or resume reuses them."""
    return Path(os.environ.get("PATCHCORE_CACHE", "~/.cache/patchcore")).expanduser()


def decode_fully(path: Path) -> tuple[int, int]:
    """Decode the whole file (not just its header); return (width, height)."""
    with readable(path, "replace or remove it"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, in one line
                with Image.open(path) as image:
                    check_pixels(image, path, "remove it or resize it")
                    image.load()
                    return image.size
        except Image.DecompressionBombError:
            raise UsageError(f"{path}: refused as a decompression bomb; remove it") from None


def _unpack_into(archive_path: Path, category: str, tmp: Path, fix: str) -> None:
    extracted = archive.unpack(archive_path, category, tmp / ".unpacked", fix)
    for child in extracted.iterdir():
        os.replace(child, tmp / child.name)
    shutil.rmtree(tmp / ".unpacked")


def _mvtec_local(path: Path, category: str, tmp: Path) -> dict:
    if path.is_dir():
        folder = path / category if (path / category).is_dir() else path
        copy_into(folder, tmp)
        return {"location": str(folder), "sha256": None}
    elif path.is_file():
        if path.name == sources.MVTEC_FULL_NAME:
            archive.verify(
                path,
                sources.MVTEC_FULL_SHA256,
                f"download the MVTec AD archive again from {sources.MVTEC_FULL_URLS[0]}",
            )
        _unpack_into(
            path, category, tmp, "replace it with a good copy (download.mvtec.path points at it)"
        )  # checked by its file counts
        return {"location": str(path), "member": category, "sha256": file_sha256(path)}
    else:
        raise UsageError(
            f"{path}: not found; set download.mvtec.path to the MVTec AD archive, a <category>.tar.xz or an extracted folder"
        )


def _file_name(url: str, default: str) -> str:
    return Path(url.split("?")[0]).name or default


def _download_mvtec(spec: DatasetSpec, category: str) -> tuple[str, Path, str]:
    """MVTec AD from the first live link: ``download.<name>.urls`` ({category} is filled in), else the known ones.

    A link to the full archive is checked against its published sha256; MVTec publishes none
    per category, so a category archive's digest is recorded and its file counts are checked.
    """
    key = f"download.{spec.name}.urls"
    links = (
        tuple(u.replace("{category}", category) for u in spec.urls)
        if spec.urls
        else sources.mvtec_category_urls(category)
    )
    full = _file_name(links[0], "") == sources.MVTEC_FULL_NAME
    name = sources.MVTEC_FULL_NAME if full else f"{category}.tar.xz"
    location, path = fetch.fetch_first(
        links, cache_dir() / "mvtec" / name, sources.MVTEC_FULL_SHA256 if full else None, key, not spec.urls
    )
    return location, path, sources.MVTEC_FULL_SHA256 if full else file_sha256(path)


def _fill(spec: DatasetSpec, category: str, tmp: Path) -> dict:
    """Put the category's files into ``tmp``; return where they came from (location, the archive's sha256)."""
    sha256: str | None
    if spec.source in sources.BENCHMARKS:
        return benchmarks.fill(spec, category, tmp, cache_dir())
    if spec.source == "bundled":
        path, sha256 = sources.bundled_archive(category)
        fix = f"restore it with 'git checkout -- {path}'"
        archive.verify(path, sha256, fix)
        location = str(path)
    elif spec.source == "mvtec" and spec.path:
        return _mvtec_local(Path(spec.path).expanduser(), category, tmp)
    elif spec.source == "mvtec":
        location, path, sha256 = _download_mvtec(spec, category)
        fix = f"delete the downloaded {path} and run again to fetch it anew"
    elif spec.source == "url":
        assert spec.sha256 is not None  # the settings require it, and a url or urls, for this source
        links = tuple(spec.urls or [str(spec.url)])
        location, path = fetch.fetch_first(
            links,
            cache_dir() / spec.name / _file_name(links[0], "archive"),
            spec.sha256,
            f"download.{spec.name}.urls",
            False,
        )
        sha256 = spec.sha256
        fix = f"delete the downloaded {path} and run again to fetch it anew"
    elif spec.source == "archive":
        path = Path(str(spec.path)).expanduser()
        if not path.is_file():
            raise UsageError(f"{path}: archive not found; fix download.{spec.name}.path")
        fix = f"replace it with a good copy (download.{spec.name}.path points at it)"
        if spec.sha256:
            archive.verify(
                path, spec.sha256, f"replace it, or correct download.{spec.name}.sha256 if the file is right"
            )
        location, sha256 = str(path), spec.sha256 or file_sha256(path)
    else:  # folder
        folder = Path(str(spec.path)).expanduser() / category
        copy_into(folder, tmp)
        return {"location": str(folder), "sha256": None}
    _unpack_into(path, category, tmp, fix)
    return {"location": location, "member": category, "sha256": sha256}


def tree_sha256(root: Path) -> str:
    """One digest of a folder's files (their relative paths and bytes), whatever the source was."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_sha256(path, progress=False)}\n".encode())
    return digest.hexdigest()


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
            found = _fill(spec, category, tmp)
            origin = f"{found['location']}:{found['member']}" if "member" in found else found["location"]
            try:
                counts = validate_category(tmp, decode_fully)
                for image in benchmarks.extra_images(tmp):
                    decode_fully(image)
            except UsageError as exc:
                # Name the user's file, not our temporary copy of it.
                raise UsageError(str(exc).replace(str(tmp), origin)) from None
            if spec.source == "mvtec":
                _check_mvtec_counts(category, counts)
                found["licence"] = sources.MVTEC_LICENCE
            record = {
                "dataset": spec.name,
                "category": category,
                "source": spec.source,
                **found,
                "tree_sha256": tree_sha256(tmp),
                "counts": counts,
            }
            if record["sha256"] is None:
                record["sha256_note"] = "a folder has no archive checksum; tree_sha256 identifies its files"
            write_json(tmp / PROVENANCE, record)
    except OSError as exc:
        if exc.errno in WRITE_FIXES:  # name the data folder being made, never the user's source file it copies
            raise UsageError(
                f"cannot write {target}: {os.strerror(exc.errno)}; {WRITE_FIXES[exc.errno]} (nothing was written)"
            ) from None
        raise
    return counts
