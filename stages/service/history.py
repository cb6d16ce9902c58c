"""The service's memory: every answered inspection and its review in SQLite (WAL), its files beside it.

state/history.sqlite holds one row per inspection; state/files/<id>/ holds the image as it was
uploaded, its heatmap and its mask. Ids are random (128 bits), never derived from a request.
An inspection's folder is complete before its row is committed, and its row is committed
before the client is answered; a failed write removes the folder again. A process killed at
any moment leaves at worst a folder without a row, which the next start removes.

The state folder is the service's alone: it carries a marker the service writes (MARKER), and
nothing in it is read, swept or written but what the service itself names: ids of 32 hex digits,
their temporaries, history.sqlite and its WAL files. No link is followed in or out of it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UsageError

SCHEMA_VERSION = 1
ID = re.compile(r"^[0-9a-f]{32}$")
PARTIAL = re.compile(r"^\.[0-9a-f]{32}\.tmp$")  # an inspection folder being written
REVIEWS = ("good", "defective")
MEDIA = {"png": "image/png", "jpg": "image/jpeg", "bmp": "image/bmp", "tif": "image/tiff"}
KINDS = ("image", "heatmap", "mask")
LOW_SPACE = 1 << 20  # bytes: below this a failed open is put down to a full disk
MARKER = ".patchcore-service"  # written at creation: what says a folder is a service's state
DATABASE = "history.sqlite"
# what an older service left without a marker (its own files only): such a folder is adopted
OWN_NAMES = {MARKER, DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal", "files"}
SCHEMA = """
CREATE TABLE IF NOT EXISTS inspections (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    created TEXT NOT NULL,
    verdict TEXT,
    suffix TEXT NOT NULL,
    has_mask INTEGER NOT NULL,
    record TEXT NOT NULL,
    review TEXT,
    reviewed_at TEXT
);
CREATE INDEX IF NOT EXISTS by_verdict ON inspections (verdict, seq);
CREATE TABLE IF NOT EXISTS about (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Unavailable(Exception):
    """The history cannot take or give an inspection now (a full disk, a read-only or locked database,
    files deleted under the service): its HTTP status and one line naming the cause."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# errno / SQLite's words -> (HTTP status, the cause in a person's words)
_FULL = (507, "the disk holding the service's state is full; free space there")
_READ_ONLY = (503, "the service's state folder cannot be written (read-only or permissions); make it writable and restart")
_LOCKED = (503, "the history database is locked by another process; retry shortly")
_ERRNO = {
    errno.ENOSPC: _FULL,
    errno.EDQUOT: _FULL,
    errno.EFBIG: _FULL,
    errno.EROFS: _READ_ONLY,
    errno.EACCES: _READ_ONLY,
    errno.EPERM: _READ_ONLY,
}


def _database_cause(exc: sqlite3.Error) -> tuple[int, str] | None:
    words = str(exc).lower()
    if "full" in words:
        return _FULL
    if "readonly" in words or "read-only" in words or "unable to open" in words or "permission" in words:
        return _READ_ONLY
    if "locked" in words or "busy" in words:
        return _LOCKED
    if "disk i/o" in words:
        return (503, "the disk holding the service's state failed a write (disk I/O error); check it and restart")
    return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="png")
    return out.getvalue()


def _is_link(path: Path) -> bool:
    return os.path.islink(path)


def claim(folder: Path, create: bool = True, check_only: bool = False) -> None:
    """Make ``folder`` the service's state, or recognise it as one; refuse (UsageError) a folder the service does not own.

    A new or empty folder is claimed (the marker written); a folder with the marker is the
    service's; an older service's folder (only its own names, a history inside) is adopted. Any
    other folder is refused: the service sweeps what it finds under files/, so it must not be
    pointed at someone else's. ``check_only``: refuse what would be refused, but create and write nothing.
    """
    where = f"--state {folder}"
    if _is_link(folder):
        raise UsageError(f"{where}: is a symbolic link; name the folder itself (the service follows no link out of its state)")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{where}: is a file, not a folder; name a folder for the service's history")
    if not folder.exists():
        if check_only and create:
            return
        if not create:
            raise UsageError(f"{where}: no service history there (no such folder); name the folder 'patchcore serve --state' used")
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise UsageError(f"{where}: cannot create it ({exc.strerror}); choose a folder that can be written") from None
    names = set(os.listdir(folder))
    marker = folder / MARKER
    if MARKER in names:
        if _is_link(marker) or not marker.is_file():
            raise UsageError(f"{where}: its {MARKER} is not the file the service writes; choose another --state")
    elif names and not (names <= OWN_NAMES and DATABASE in names):
        shown = ", ".join(sorted(names)[:5])
        raise UsageError(
            f"{where}: holds files the service did not write ({shown}) and no {MARKER} marker; name a new or empty folder for its history"
        )
    for name in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", "files"):
        if _is_link(folder / name):
            raise UsageError(f"{where}: {name} is a symbolic link; the service follows no link out of its state (remove it)")
    if (folder / "files").exists() and not (folder / "files").is_dir():
        raise UsageError(f"{where}: files is not a folder; the service keeps inspections there (move it away)")
    if MARKER not in names and create and not check_only:
        try:
            marker.write_text(json.dumps({"written_by": "patchcore serve", "schema": SCHEMA_VERSION}) + "\n")
        except OSError as exc:
            raise UsageError(f"{where}: cannot be written ({exc.strerror}); the service keeps its history there: make it writable") from None


class History:
    def __init__(self, folder: Path, sweep: bool = True, read_only: bool = False):
        """``sweep``: remove a killed run's leftovers; only the serving process may (a reader beside a live
        server would remove the folder of an inspection it is writing). ``read_only``: a reader's view
        (feedback export), which writes nothing, not even the marker."""
        self.folder = Path(folder)
        claim(self.folder, create=not read_only)
        self.files = self.folder / "files"
        self.lock = threading.Lock()
        self.path = self.folder / DATABASE
        where = f"--state {self.folder}"
        if read_only and not self.path.is_file():
            raise UsageError(f"{where}: no service history there ({DATABASE}); name the folder 'patchcore serve --state' used")
        if not read_only:
            try:
                self.files.mkdir(exist_ok=True)
            except OSError as exc:
                raise UsageError(f"{where}: cannot create files/ ({exc.strerror}); {_ERRNO.get(exc.errno or 0, _READ_ONLY)[1]}") from None
        if not read_only and not self.path.exists() and self.files.is_dir():
            kept = sum(1 for name in os.listdir(self.files) if ID.match(name))
            if kept:
                raise UsageError(
                    f"{where}: {DATABASE} is missing but files/ holds {kept} inspection(s); restore it from a backup, "
                    "or move files/ away to start an empty history (a new one would remove them)"
                )
        self.db = self._open(read_only, where)
        self.inode = os.stat(self.path).st_ino
        self.swept = self._sweep() if sweep and not read_only else 0

    def _open(self, read_only: bool, where: str) -> sqlite3.Connection:
        try:
            if read_only:
                db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
            else:
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise UsageError(f"{self.path}: history version {version}, this service reads version {SCHEMA_VERSION}; choose another --state")
            if not read_only:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # a committed inspection survives a power cut too, not only a killed process
                db.executescript(SCHEMA)
                if version == 0:  # written once: a restart on a full disk reads and serves without writing its header
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("SELECT count(*) FROM inspections").fetchone()
        except sqlite3.DatabaseError as exc:
            cause = _database_cause(exc)
            if cause is None or cause[0] == 503:
                # SQLite says "disk I/O error" when a full disk keeps it from making its WAL index
                with contextlib.suppress(OSError):
                    cause = _FULL if shutil.disk_usage(self.folder).free < LOW_SPACE else cause
            if cause is not None:
                raise UsageError(f"{where}: {cause[1]} ({exc})") from None
            raise UsageError(f"{self.path}: not a patchcore service history ({exc}); move it away or choose another --state") from None
        return db

    def _own_entries(self) -> Iterator[os.DirEntry]:
        with os.scandir(self.files) as entries:
            yield from entries

    def _sweep(self) -> int:
        """Remove what a killed process left: folders being written, and folders whose row was never committed.

        Only real folders named as the service names them (an id, or an id's temporary) are removed; any
        other entry, and any link, is the user's and stays. Removing a folder follows no link inside it."""
        known = {row[0] for row in self.db.execute("SELECT id FROM inspections")}
        swept = 0
        for entry in self._own_entries():
            ours = PARTIAL.match(entry.name) or (ID.match(entry.name) and entry.name not in known)
            if ours and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
                swept += 1
        return swept

    def _check_database(self) -> None:
        """The database file is the one the service opened: deleted or replaced behind its back, a commit would
        land in a file no restart sees, and an answered inspection would be lost."""
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = None
        if current != self.inode:
            raise Unavailable(503, f"the history database {self.path} was deleted or replaced while the service ran; restart the service")

    def add(self, record: dict, image: bytes, suffix: str, heatmap: bytes, mask: bytes | None) -> dict:
        """Store one answered inspection; return its row (with id and time). Raises Unavailable, leaving
        neither files nor row, when either cannot be written."""
        ident = secrets.token_hex(16)
        partial = self.files / f".{ident}.tmp"
        final = self.files / ident
        created = _now()
        row = (ident, created, record.get("verdict"), suffix, int(mask is not None), json.dumps(record, sort_keys=True))
        try:
            self._check_database()
            if not self.files.is_dir() or _is_link(self.files):
                raise Unavailable(503, f"{self.files} was removed or replaced while the service ran; restart the service")
            partial.mkdir()
            for name, data in ((f"image.{suffix}", image), ("heatmap.png", heatmap), ("mask.png", mask)):
                if data is not None:
                    with open(partial / name, "xb") as f:
                        f.write(data)
                        os.fsync(f.fileno())
            os.replace(partial, final)
            with self.lock:
                self._check_database()
                self.db.execute("INSERT INTO inspections (id, created, verdict, suffix, has_mask, record) VALUES (?, ?, ?, ?, ?, ?)", row)
        except BaseException as exc:
            for leftover in (partial, final):  # no files without a row
                if leftover.is_dir() and not _is_link(leftover):
                    shutil.rmtree(leftover, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno in _ERRNO:
                status, cause = _ERRNO[exc.errno]
                raise Unavailable(status, f"the inspection was not stored: {cause}") from None
            if isinstance(exc, sqlite3.Error):
                status, cause = _database_cause(exc) or (503, f"the history database failed ({exc})")
                raise Unavailable(status, f"the inspection was not stored: {cause}") from None
            raise
        return self.get(ident) or {}

    def _row(self, row: tuple) -> dict:
        ident, created, suffix, has_mask, record, review, reviewed_at = row
        return {
            **json.loads(record),
            "id": ident,
            "created": created,
            "review": review,
            "reviewed_at": reviewed_at,
            "_suffix": suffix,
            "_mask": bool(has_mask),
        }

    _COLUMNS = "id, created, suffix, has_mask, record, review, reviewed_at"

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.lock:
            try:
                return self.db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                status, cause = _database_cause(exc) or (503, f"the history database cannot be read ({exc})")
                raise Unavailable(status, cause) from None

    def get(self, ident: str) -> dict | None:
        if not ID.match(ident):
            return None
        rows = self._read(f"SELECT {self._COLUMNS} FROM inspections WHERE id = ?", (ident,))
        return self._row(rows[0]) if rows else None

    def latest(self, verdict: str | None, limit: int, before: str | None) -> list[dict]:
        """Newest first; ``before``: an id, to page on from it."""
        where: list[str] = []
        args: tuple = ()
        if verdict is not None:
            where.append("verdict = ?")
            args += (verdict,)
        if before is not None:
            where.append("seq < (SELECT seq FROM inspections WHERE id = ?)")
            args += (before,)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(f"SELECT {self._COLUMNS} FROM inspections {clause} ORDER BY seq DESC LIMIT ?", (*args, limit))
        return [self._row(row) for row in rows]

    def review(self, ident: str, review: str) -> dict | None:
        with self.lock:
            try:
                self._check_database()
                done = self.db.execute("UPDATE inspections SET review = ?, reviewed_at = ? WHERE id = ?", (review, _now(), ident)).rowcount
            except sqlite3.Error as exc:
                status, cause = _database_cause(exc) or (503, f"the history database failed ({exc})")
                raise Unavailable(status, f"the review was not stored: {cause}") from None
        return self.get(ident) if done else None

    def file(self, ident: str, kind: str) -> tuple[Path, str] | None:
        """The path and media type of an inspection's image, heatmap or mask (built from the stored id alone):
        None when the model gave no mask; Unavailable (404) when the file is gone or is not the service's own."""
        row = self.get(ident)
        if row is None or (kind == "mask" and not row["_mask"]):
            return None
        suffix = row["_suffix"] if kind == "image" else "png"
        if kind not in KINDS or suffix not in MEDIA or not ID.match(row["id"]):
            raise Unavailable(404, f"inspection {ident}: its history row was changed outside the service")
        path = self.files / row["id"] / f"{kind}.{suffix}"
        if not regular_file(self.files, path):
            raise Unavailable(404, f"inspection {ident}: its {kind} file is missing (deleted outside the service)")
        return path, MEDIA[suffix]

    def reviewed(self) -> list[dict]:
        """Every reviewed inspection, oldest first."""
        rows = self._read(f"SELECT {self._COLUMNS} FROM inspections WHERE review IS NOT NULL ORDER BY seq")
        return [self._row(row) for row in rows]

    def counts(self) -> dict:
        ((total, reviewed),) = self._read("SELECT count(*), count(review) FROM inspections")
        return {"total": total, "reviewed": reviewed}

    def remember(self, model: dict) -> None:
        """The model this state last served (feedback export names the category after it)."""
        with self.lock:
            try:
                self.db.execute("INSERT OR REPLACE INTO about (key, value) VALUES ('model', ?)", (json.dumps(model, sort_keys=True),))
            except sqlite3.Error as exc:
                cause = _database_cause(exc) or (503, str(exc))
                raise UsageError(f"--state {self.folder}: {cause[1]} ({exc})") from None

    def model(self) -> dict:
        rows = self._read("SELECT value FROM about WHERE key = 'model'")
        try:
            found = json.loads(rows[0][0]) if rows else {}
        except ValueError:
            found = {}
        return found if isinstance(found, dict) else {}

    def close(self) -> None:
        self.db.close()


def regular_file(files: Path, path: Path) -> bool:
    """``path`` is a regular file reached from ``files`` without any link (the folders between included)."""
    try:
        if _is_link(files) or not stat.S_ISDIR(os.lstat(files).st_mode):
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
