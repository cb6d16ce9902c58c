"""Write-then-rename helpers, so an interrupted stage never leaves a half-written output."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Protocol

from patchcore.errors import WRITE_FIXES


class Staging(Protocol):
    def take(self, target: Path, folder: bool) -> Path | None: ...


# the output set a stage has open (store.output_set): its outputs are written to the set's temporaries
STAGING: ContextVar[Staging | None] = ContextVar("patchcore_staging", default=None)


@contextlib.contextmanager
def _named(target: Path) -> Iterator[None]:
    """An OSError of a write that names no file (a full disk in write()) is given the output's name."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno in WRITE_FIXES and "filename = '" not in str(exc):
            exc.filename = str(target)
        raise


def _staged(target: Path, folder: bool) -> Path | None:
    staging = STAGING.get()
    return None if staging is None else staging.take(target, folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing ancestors; return the ones created, deepest first."""
    created = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        created.append(parent)
    folder.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty(folders: list[Path]) -> None:
    """A failed first write leaves no empty folders behind (data/<dataset>/, features/...)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (another output landed there meanwhile) or gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def sweep(target: Path) -> None:
    """Remove the temporaries that a killed run left beside ``target`` (SIGKILL runs no cleanup).

    A temporary's name carries the pid of the run that made it; one whose run is gone is
    removed, one of a live run (another predict writing elsewhere in the folder) is kept. Names
    without a pid come from versions before this one and no run of this version owns them.
    """
    prefix = f".{target.name}."
    if not target.parent.is_dir():
        return
    for leftover in target.parent.iterdir():
        name = leftover.name
        if not (name.startswith(prefix) and name.endswith((".tmp", ".old"))):
            continue
        pid = name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() or _alive(int(pid))):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    Inside an open output set (store.output_set) the set's temporary is yielded instead and
    the set renames it with the others.

    The temporary lives in the same folder so the final rename is atomic on one
    file system. On any error the temporary is removed and ``target`` is left as
    it was.
    """
    target = Path(target)
    reserved = _staged(target, folder=False)
    if reserved is not None:
        with _named(target):
            yield reserved  # the set puts it in place with the others
        return
    created = _make_parents(target.parent)
    sweep(target)
    fd, tmp_name = tempfile.mkstemp(prefix=_prefix(target), suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _named(target):
            yield tmp
        # mkstemp makes owner-only files; outputs get the ordinary permissions
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_empty(created)
        raise


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; it replaces ``target`` (whole) on success."""
    target = Path(target)
    reserved = _staged(target, folder=True)
    if reserved is not None:
        with _named(target):
            yield reserved
        return
    created = _make_parents(target.parent)
    sweep(target)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent))
    try:
        with _named(target):
            yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        put_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise


def put_folder(tmp: Path, target: Path) -> None:
    """Put the finished folder ``tmp`` in place of ``target``, whole.

    The old copy is renamed away first and removed after, so no moment shows a mixed folder.
    """
    if os.path.lexists(target):
        old = Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".old", dir=target.parent))
        os.replace(target, old / "x")
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def json_text(obj: object) -> str:
    """Deterministic JSON: sorted keys, fixed indent, one final newline."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def write_json(target: Path, obj: object) -> None:
    """Deterministic JSON written atomically."""
    with atomic_path(Path(target), ".json") as tmp:
        tmp.write_text(json_text(obj))
