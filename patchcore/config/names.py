"""Names from params.yaml that become folder names: data sets, categories, backbones."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StrictStr

_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
# A setting's name becomes a folder and a file name ('<category>.json'); a stage writes each through a
# temporary beside it ('.<category>.json.<pid>.<8 chars>.json.tmp', store/atomic.py) and DVC names stages
# after it: 64 leaves every one of those far inside the 255 bytes a file name may hold.
MAX_SETTING_NAME = 64


def check_name(value: str) -> str:
    """A plain path component: letters, digits, '_', '-', '.'; no leading dot or dash, no trailing dot, no '..', no
    separators.

    These names are joined into paths under data/, features/, metrics/ and plots/; anything
    else could point a stage outside the project (and a stage replaces what it writes).
    """
    if not _PLAIN.fullmatch(value) or ".." in value or value.endswith("."):
        raise ValueError(
            f"{value[:120]!r} is not a plain name: use letters, digits, '_', '-' and '.', "
            "not starting with '.' or '-', not ending with '.', without '/' or '..' (it becomes a folder name)"
        )
    return value


def check_setting_name(value: str) -> str:
    """A data set, category or backbone name of params.yaml: plain, and short enough for every file named after it."""
    check_name(value)
    if len(value) > MAX_SETTING_NAME:
        raise ValueError(
            f"{value[:40]!r}... ({len(value)} characters) is not a plain name for a setting: use at most {MAX_SETTING_NAME} "
            "characters (it becomes folder and file names, each with a temporary beside it)"
        )
    return value


Name = Annotated[StrictStr, AfterValidator(check_setting_name)]
