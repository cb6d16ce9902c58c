"""A local data folder copied into the project's data folder: data files only, no link followed to a folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from patchcore.datasets.layout import check_regular, is_data_name
from patchcore.errors import UsageError

MVTEC_LAYOUT = "it must hold train/good and test/<good|defect type> (MVTec layout)"


def copy_into(folder: Path, tmp: Path, missing: str = MVTEC_LAYOUT) -> None:
    """Copy a local folder's data files into ``tmp``; a link to a folder is refused, links to files are followed."""
    if not folder.is_dir():
        raise UsageError(f"{folder}: folder not found; {missing}")
    # A plain walk rather than shutil.copytree, which would fold a full disk into a generic error.
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if is_data_name(d))
        for d in dirs:  # a linked folder could loop or lead anywhere: copy it in instead
            if os.path.islink(Path(top) / d):
                raise UsageError(
                    f"{Path(top) / d}: a symbolic link to a folder; put the folder itself there (links to files are followed)"
                )
        out = tmp / Path(top).relative_to(folder)
        out.mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            if is_data_name(name):
                check_regular(Path(top) / name, "remove it, or put the image file itself there")
                shutil.copy2(Path(top) / name, out / name)
