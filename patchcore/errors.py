"""The errors that reach the user as a single line instead of a traceback."""

from __future__ import annotations

import errno
import importlib
import os
import re
from types import ModuleType


class UsageError(Exception):
    """Bad input the user can fix: a parameter, a file, a folder.

    The message names the offending thing and the fix; the CLI prints it on one
    line and exits with code 2.
    """


def optional(module: str, what: str, extra: str) -> ModuleType:
    """A package of an optional extra, or one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(
            f"{what} needs the Python package '{module}', which is not installed; install the {extra} extra: pip install -e '.[{extra}]'"
        ) from None


# errno -> what the user can do about a failed write
WRITE_FIXES = {
    errno.ENOSPC: "free space on that disk and run again",
    errno.EFBIG: "the file outgrew the file-size limit (ulimit -f) or the file system's; raise the limit or write elsewhere",
    errno.EDQUOT: "free space or ask for a larger quota, then run again",
    errno.EROFS: "the file system is read-only; run where the outputs can be written",
    errno.EACCES: "fix the folder's permissions, then run again",
    errno.EPERM: "fix the folder's permissions, then run again",
}
# the temporaries are ".<name>.<pid>.<8 random chars><suffix>.tmp" beside the output (store.atomic)
_TEMPORARY = re.compile(r"^\.(?P<name>.+?)\.(\d+\.)?[a-z0-9_]{8}(\.[A-Za-z0-9]+)?\.(tmp|old)$")
_H5_FILENAME = re.compile(r"filename = '([^']+)'")


def output_name(path: str) -> str:
    """The output a temporary stands for, so the message names a file the user knows (also a file inside a folder's
    temporary)."""
    parts = []
    for part in path.split(os.sep):
        match = _TEMPORARY.match(part)
        parts.append(match.group("name") if match else part)
    return os.sep.join(parts)


def write_error(exc: OSError) -> str | None:
    """One line for an OSError that a write raised, or None when it is not such an error."""
    if exc.errno not in WRITE_FIXES:
        return None
    # a copy that fails names its source first and the file it writes second (shutil, os.replace)
    path = exc.filename2 or exc.filename or next(iter(_H5_FILENAME.findall(str(exc))), None) or "an output file"
    return f"cannot write {output_name(str(path))}: {os.strerror(exc.errno)}; {WRITE_FIXES[exc.errno]}"


def failure(exc: BaseException) -> tuple[str, int] | None:
    """The one line and exit code of an error the user can act on; None for a bug (its traceback is shown)."""
    if isinstance(exc, UsageError):
        return str(exc), 2
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted; no partial output was left behind", 130
    if isinstance(exc, OSError):
        message = write_error(exc)
        return None if message is None else (message, 2)
    return None
