"""The service's memory: every answered inspection and its review in SQLite (WAL), its files beside it.

state/history.sqlite holds one row per inspection; state/files/<id>/ holds the image as it was
uploaded, its heatmap and its mask. Ids are random (128 bits), never derived from a request.
An inspection's folder is complete before its row is committed, and its row is committed
before the client is answered, so a process killed at any moment leaves at worst a folder
without a row, which the next start removes.
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

from ..errors import UsageError

SCHEMA_VERSION = 1
ID = re.compile(r"^[0-9a-f]{32}$")
REVIEWS = ("good", "defective")
MEDIA = {"png": "image/png", "jpg": "image/jpeg", "bmp": "image/bmp", "tif": "image/tiff"}
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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="png")
    return out.getvalue()


class History:
    def __init__(self, folder: Path, sweep: bool = True):
        """``sweep``: remove a killed run's leftovers; only the serving process may (a reader beside a live
        server would remove the folder of an inspection it is writing)."""
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise UsageError(f"--state {self.folder}: is a file, not a folder; name a folder for the service's history")
        self.files = self.folder / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        path = self.folder / "history.sqlite"
        try:
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise UsageError(f"{path}: history version {version}, this service reads version {SCHEMA_VERSION}; choose another --state")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a committed inspection survives a power cut too, not only a killed process
            self.db.executescript(SCHEMA)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{path}: not a patchcore service history ({exc}); move it away or choose another --state") from None
        self.swept = self._sweep() if sweep else 0

    def _sweep(self) -> int:
        """Remove what a killed process left: folders being written, and folders whose row was never committed."""
        known = {row[0] for row in self.db.execute("SELECT id FROM inspections")}
        swept = 0
        for entry in self.files.iterdir():
            if entry.name not in known:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
                swept += 1
        return swept

    def add(self, record: dict, image: bytes, suffix: str, heatmap: bytes, mask: bytes | None) -> dict:
        """Store one answered inspection; return its row (with id and time)."""
        ident = secrets.token_hex(16)
        partial = self.files / f".{ident}.tmp"
        partial.mkdir()
        for name, data in ((f"image.{suffix}", image), ("heatmap.png", heatmap), ("mask.png", mask)):
            if data is not None:
                with open(partial / name, "wb") as f:
                    f.write(data)
                    os.fsync(f.fileno())
        os.replace(partial, self.files / ident)
        created = _now()
        row = (ident, created, record.get("verdict"), suffix, int(mask is not None), json.dumps(record, sort_keys=True))
        with self.lock:
            self.db.execute("INSERT INTO inspections (id, created, verdict, suffix, has_mask, record) VALUES (?, ?, ?, ?, ?, ?)", row)
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

    def get(self, ident: str) -> dict | None:
        if not ID.match(ident):
            return None
        with self.lock:
            row = self.db.execute(f"SELECT {self._COLUMNS} FROM inspections WHERE id = ?", (ident,)).fetchone()
        return None if row is None else self._row(row)

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
        with self.lock:
            rows = self.db.execute(f"SELECT {self._COLUMNS} FROM inspections {clause} ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
        return [self._row(row) for row in rows]

    def review(self, ident: str, review: str) -> dict | None:
        with self.lock:
            done = self.db.execute("UPDATE inspections SET review = ?, reviewed_at = ? WHERE id = ?", (review, _now(), ident)).rowcount
        return self.get(ident) if done else None

    def file(self, ident: str, kind: str) -> tuple[Path, str] | None:
        """The path and media type of an inspection's image, heatmap or mask (built from the stored id alone)."""
        row = self.get(ident)
        if row is None or (kind == "mask" and not row["_mask"]):
            return None
        suffix = row["_suffix"] if kind == "image" else "png"
        return self.files / row["id"] / f"{kind}.{suffix}", MEDIA[suffix]

    def reviewed(self) -> list[dict]:
        """Every reviewed inspection, oldest first."""
        with self.lock:
            rows = self.db.execute(f"SELECT {self._COLUMNS} FROM inspections WHERE review IS NOT NULL ORDER BY seq").fetchall()
        return [self._row(row) for row in rows]

    def counts(self) -> dict:
        with self.lock:
            total, reviewed = self.db.execute("SELECT count(*), count(review) FROM inspections").fetchone()
        return {"total": total, "reviewed": reviewed}

    def remember(self, model: dict) -> None:
        """The model this state last served (feedback export names the category after it)."""
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO about (key, value) VALUES ('model', ?)", (json.dumps(model, sort_keys=True),))

    def model(self) -> dict:
        with self.lock:
            row = self.db.execute("SELECT value FROM about WHERE key = 'model'").fetchone()
        return {} if row is None else json.loads(row[0])

    def close(self) -> None:
        self.db.close()
