"""The state folder: the service's alone, recognised by the marker it writes, never entered through a link."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from patchcore.errors import UsageError

SCHEMA_VERSION = 1
MARKER = ".patchcore-service"  # written at creation: what says a folder is a service's state
DATABASE = "history.sqlite"
# what an older service left without a marker (its own files only): such a folder is adopted
OWN_NAMES = {MARKER, DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal", "files"}


def is_link(path: Path) -> bool:
    return os.path.islink(path)


def claim(folder: Path, create: bool = True, check_only: bool = False) -> None:
    """Make ``folder`` the service's state, or recognise it as one; refuse (UsageError) a folder the service does not
    own.

    A new or empty folder is claimed (the marker written); a folder with the marker is the
    service's; an older service's folder (only its own names, a history inside) is adopted. Any
    other folder is refused: the service sweeps what it finds under files/, so it must not be
    pointed at someone else's. ``check_only``: refuse what would be refused, but create and write nothing.
    """
    where = f"--state {folder}"
    if is_link(folder):
        raise UsageError(
            f"{where}: is a symbolic link; name the folder itself (the service follows no link out of its state)"
        )
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{where}: is a file, not a folder; name a folder for the service's history")
    if not folder.exists():
        if check_only and create:
            return
        if not create:
            raise UsageError(
                f"{where}: no service history there (no such folder); name the folder 'patchcore serve --state' used"
            )
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise UsageError(
                f"{where}: cannot create it ({exc.strerror}); choose a folder that can be written"
            ) from None
    names = set(os.listdir(folder))
    marker = folder / MARKER
    if MARKER in names:
        if is_link(marker) or not marker.is_file():
            raise UsageError(f"{where}: its {MARKER} is not the file the service writes; choose another --state")
    elif names and not (names <= OWN_NAMES and DATABASE in names):
        shown = ", ".join(sorted(names)[:5])
        raise UsageError(
            f"{where}: holds files the service did not write ({shown}) and no {MARKER} marker; name a new or empty folder for its history"
        )
    for name in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", "files"):
        if is_link(folder / name):
            raise UsageError(
                f"{where}: {name} is a symbolic link; the service follows no link out of its state (remove it)"
            )
    if (folder / "files").exists() and not (folder / "files").is_dir():
        raise UsageError(f"{where}: files is not a folder; the service keeps inspections there (move it away)")
    if MARKER not in names and create and not check_only:
        try:
            marker.write_text(json.dumps({"written_by": "patchcore serve", "schema": SCHEMA_VERSION}) + "\n")
        except OSError as exc:
            raise UsageError(
                f"{where}: cannot be written ({exc.strerror}); the service keeps its history there: make it writable"
            ) from None


def regular_file(files: Path, path: Path) -> bool:
    """``path`` is a regular file reached from ``files`` without any link (the folders between included)."""
    try:
        if is_link(files) or not stat.S_ISDIR(os.lstat(files).st_mode):
            return False
        relative = path.relative_to(files)
        current = files
        for part in relative.parts:
            current = current / part
            mode = os.lstat(current).st_mode
            if stat.S_ISLNK(mode):
                return False
        return stat.S_ISREG(mode)
    except (OSError, ValueError):
        return False


def read_own(files: Path, path: Path) -> bytes | None:
    """A file the service wrote under ``files``, read whole: None when it is gone, ValueError when a link or
    anything but a regular file stands on the way (checked, then opened without following a link)."""
    if not os.path.lexists(path):
        return None
    if not regular_file(files, path):
        raise ValueError(f"{path}: not a file the service wrote (a link or another kind of file)")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None  # deleted since the check
    with os.fdopen(fd, "rb") as f:
        return f.read()
