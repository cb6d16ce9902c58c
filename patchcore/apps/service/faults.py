"""What the service answers when its disk or its history fails: an HTTP status and one line naming the cause."""

from __future__ import annotations

import errno
import sqlite3


class Unavailable(Exception):
    """The history cannot take or give an inspection now (a full disk, a read-only or locked database,
    files deleted under the service): its HTTP status and one line naming the cause."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# errno / SQLite's words -> (HTTP status, the cause in a person's words)
FULL = (507, "the disk holding the service's state is full; free space there")
READ_ONLY = (
    503,
    "the service's state folder cannot be written (read-only or permissions); make it writable and restart",
)
LOCKED = (503, "the history database is locked by another process; retry shortly")
ERRNO = {
    errno.ENOSPC: FULL,
    errno.EDQUOT: FULL,
    errno.EFBIG: FULL,
    errno.EROFS: READ_ONLY,
    errno.EACCES: READ_ONLY,
    errno.EPERM: READ_ONLY,
}


def database_cause(exc: sqlite3.Error) -> tuple[int, str] | None:
    words = str(exc).lower()
    if "full" in words:
        return FULL
    if "readonly" in words or "read-only" in words or "unable to open" in words or "permission" in words:
        return READ_ONLY
    if "locked" in words or "busy" in words:
        return LOCKED
    if "disk i/o" in words:
        return (503, "the disk holding the service's state failed a write (disk I/O error); check it and restart")
    return None
