"""The history's SQLite file: opened (read-write in WAL mode, or read-only), its schema, and why it cannot be."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

from patchcore.apps.service.faults import FULL, database_cause
from patchcore.apps.service.state_folder import SCHEMA_VERSION
from patchcore.errors import UsageError

LOW_SPACE = 1 << 20  # bytes: below this a failed open is put down to a full disk
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


def open_database(path: Path, read_only: bool, where: str) -> sqlite3.Connection:
    """The connection, or one line: a full, read-only or locked folder named as such, never as 'not a history'."""
    try:
        if read_only:
            db = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
            )
        else:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise UsageError(
                f"{path}: history version {version}, this service reads version {SCHEMA_VERSION}; choose another --state"
            )
        if not read_only:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "PRAGMA synchronous=FULL"
            )  # a committed inspection survives a power cut too, not only a killed process
            db.executescript(SCHEMA)
            if version == 0:  # written once: a restart on a full disk reads and serves without writing its header
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("SELECT count(*) FROM inspections").fetchone()
    except sqlite3.DatabaseError as exc:
        cause = database_cause(exc)
        if cause is None or cause[0] == 503:
            # SQLite says "disk I/O error" when a full disk keeps it from making its WAL index
            with contextlib.suppress(OSError):
                cause = FULL if shutil.disk_usage(path.parent).free < LOW_SPACE else cause
        if cause is not None:
            raise UsageError(f"{where}: {cause[1]} ({exc})") from None
        raise UsageError(
            f"{path}: not a patchcore service history ({exc}); move it away or choose another --state"
        ) from None
    return db
