"""Checksum verification and safe, atomic unpacking of data set archives."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from tqdm import tqdm

from patchcore.datasets.fetch import file_sha256
from patchcore.errors import WRITE_FIXES, UsageError


def verify(path: Path, expected: str, fix: str = "replace it with a good copy") -> None:
    actual = file_sha256(path)
    if actual != expected:
        raise UsageError(
            f"{path}: sha256 {actual} does not match the expected {expected}; the file is damaged or not the expected one: {fix}"
        )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]


def _wanted(name: str, roots: tuple[str, ...], nested: bool) -> bool:
    """A member under one of ``roots``, at the top or (``nested``) under one top folder."""
    parts = name.removeprefix("./").split("/")  # some archives (MVTec's full one) name members "./<category>/..."
    return (len(parts) > 1 and parts[0] in roots) or (nested and len(parts) > 2 and parts[1] in roots)


def unpack(
    archive: Path,
    member_root: str,
    dest: Path,
    fix: str = "replace it with a good copy",
    *,
    also: tuple[str, ...] = (),
    nested: bool = False,
) -> Path:
    """Extract the members under ``member_root/`` (and the folders ``also``) into ``dest``; return the extracted root.

    ``nested``: the folders may sit under one top folder, as the owners' archives of the benchmarks
    put them. Members that would land outside ``dest`` (absolute paths, ``..``, links) are refused:
    tarfile's ``data`` filter enforces that for tar archives, and zip names are checked here.
    """
    roots = (member_root.strip("/"), *also)
    name = archive.name.lower()
    try:
        if name.endswith((".tar.gz", ".tgz", ".tar.xz", ".tar", ".tar.bz2")):
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers() if _wanted(m.name, roots, nested)]
                tar.extractall(dest, members=tqdm(members, desc=f"unpack {archive.name}", leave=False), filter="data")
        elif name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for info in tqdm(zf.infolist(), desc=f"unpack {archive.name}", leave=False):
                    if not _wanted(info.filename, roots, nested):
                        continue
                    target = (dest / info.filename).resolve()
                    if not target.is_relative_to(dest.resolve()):
                        raise UsageError(
                            f"{archive}: member {info.filename} would be written outside {dest}; refusing the archive"
                        )
                    zf.extract(info, dest)
        else:
            raise UsageError(f"{archive}: unsupported archive type; use .tar.gz, .tar.xz or .zip")
    except tarfile.FilterError as exc:
        raise UsageError(
            f"{archive}: unsafe member refused ({_first_line(exc)}); the archive is not a plain data set"
        ) from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        if (
            isinstance(exc, OSError) and exc.errno in WRITE_FIXES
        ):  # a write that failed (full disk, file-size limit): the caller says so
            raise
        raise UsageError(
            f"{archive}: cannot unpack it ({exc.__class__.__name__}: {_first_line(exc)}); the archive is damaged: {fix}"
        ) from None
    found = [dest / roots[0]] if (dest / roots[0]).is_dir() else []
    if nested and not found and dest.is_dir():
        found = sorted(p / roots[0] for p in dest.iterdir() if (p / roots[0]).is_dir())
    if len(found) != 1:
        raise UsageError(f"{archive}: no single '{roots[0]}/' folder inside; not the expected data set archive")
    return found[0]
