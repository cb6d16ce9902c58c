"""Names from params.yaml that become folder names: data sets, categories, backbones."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StrictStr

_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def check_name(value: str) -> str:
    """A plain name: letters, digits, '_', '-', '.'; no leading dot or dash, no '..', no separators.

    These names are joined into paths under data/, features/, metrics/ and plots/; anything
    else could point a stage outside the project (and a stage replaces what it writes).
    """
    if not _PLAIN.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{value!r} is not a plain name: use letters, digits, '_', '-' and '.', "
            "not starting with '.' or '-', without '/' or '..' (it becomes a folder name)"
        )
    return value


Name = Annotated[StrictStr, AfterValidator(check_name)]
