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

import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from patchcore.apps.service.database import open_database
from patchcore.apps.service.faults import ERRNO, READ_ONLY, Unavailable, database_cause
from patchcore.apps.service.state_folder import DATABASE, claim, is_link, regular_file
from patchcore.errors import UsageError

ID = re.compile(r"^[0-9a-f]{32}$")
PARTIAL = re.compile(r"^\.[0-9a-f]{32}\.tmp$")  # an inspection folder being written
REVIEWS = ("good", "defective")
MEDIA = {"png": "image/png", "jpg": "image/jpeg", "bmp": "image/bmp", "tif": "image/tiff"}
KINDS = ("image", "heatmap", "mask")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="png")
    return out.getvalue()


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
            raise UsageError(
                f"{where}: no service history there ({DATABASE}); name the folder 'patchcore serve --state' used"
            )
        if not read_only:
            try:
                self.files.mkdir(exist_ok=True)
            except OSError as exc:
                raise UsageError(
                    f"{where}: cannot create files/ ({exc.strerror}); {ERRNO.get(exc.errno or 0, READ_ONLY)[1]}"
                ) from None
        if not read_only and not self.path.exists() and self.files.is_dir():
            kept = sum(1 for name in os.listdir(self.files) if ID.match(name))
            if kept:
                raise UsageError(
                    f"{where}: {DATABASE} is missing but files/ holds {kept} inspection(s); restore it from a backup, "
                    "or move files/ away to start an empty history (a new one would remove them)"
                )
        self.db = open_database(self.path, read_only, where)
        self.inode = os.stat(self.path).st_ino
        self.swept = self._sweep() if sweep and not read_only else 0

    def _sweep(self) -> int:
        """Remove what a killed process left: folders being written, and folders whose row was never committed.

        Only real folders named as the service names them (an id, or an id's temporary) are removed; any
        other entry, and any link, is the user's and stays. Removing a folder follows no link inside it."""
        known = {row[0] for row in self.db.execute("SELECT id FROM inspections")}
        swept = 0
        with os.scandir(self.files) as entries:
            for entry in entries:
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
            raise Unavailable(
                503,
                f"the history database {self.path} was deleted or replaced while the service ran; restart the service",
            )

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
            if not self.files.is_dir() or is_link(self.files):
                raise Unavailable(
                    503, f"{self.files} was removed or replaced while the service ran; restart the service"
                )
            partial.mkdir()
            for name, data in ((f"image.{suffix}", image), ("heatmap.png", heatmap), ("mask.png", mask)):
                if data is not None:
                    with open(partial / name, "xb") as f:
                        f.write(data)
                        os.fsync(f.fileno())
            os.replace(partial, final)
            with self.lock:
                self._check_database()
                self.db.execute(
                    "INSERT INTO inspections (id, created, verdict, suffix, has_mask, record) VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
        except BaseException as exc:
            for leftover in (partial, final):  # no files without a row
                if leftover.is_dir() and not is_link(leftover):
                    shutil.rmtree(leftover, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno in ERRNO:
                status, cause = ERRNO[exc.errno]
                raise Unavailable(status, f"the inspection was not stored: {cause}") from None
            if isinstance(exc, sqlite3.Error):
                status, cause = database_cause(exc) or (503, f"the history database failed ({exc})")
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
                status, cause = database_cause(exc) or (503, f"the history database cannot be read ({exc})")
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
                done = self.db.execute(
                    "UPDATE inspections SET review = ?, reviewed_at = ? WHERE id = ?", (review, _now(), ident)
                ).rowcount
            except sqlite3.Error as exc:
                status, cause = database_cause(exc) or (503, f"the history database failed ({exc})")
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
                self.db.execute(
                    "INSERT OR REPLACE INTO about (key, value) VALUES ('model', ?)",
                    (json.dumps(model, sort_keys=True),),
                )
            except sqlite3.Error as exc:
                cause = database_cause(exc) or (503, str(exc))
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
