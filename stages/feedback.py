"""`patchcore feedback export`: the reviewed inspections of a service as a folder data set in MVTec layout.

Reviewed good images go to <category>/train/good, reviewed defective ones to
<category>/test/defective; add the folder as a `folder` source and `dvc repro` retrains on them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .config.names import check_name
from .errors import UsageError
from .service.history import History
from .store.atomic import atomic_dir

PLACES = {"good": Path("train") / "good", "defective": Path("test") / "defective"}
MARK = "feedback.json"  # says a folder was written here, so a second export may replace it


def main(state: Path, out: Path, category: str | None) -> str:
    if not (state / "history.sqlite").is_file():
        raise UsageError(f"--state {state}: no service history there (history.sqlite); name the folder 'patchcore serve --state' used")
    history = History(state, sweep=False)  # the server may be running and writing
    try:
        rows, served = history.reviewed(), history.model()
    finally:
        history.close()
    if not rows:
        raise UsageError(
            f"--state {state}: no reviewed inspections yet; mark images good or defective on the review page (or POST /v1/inspections/ID/review)"
        )
    category = category or served.get("category") or "line"
    try:
        check_name(category)
    except ValueError as exc:
        raise UsageError(f"--category: {exc}") from None
    target = out / category
    if target.exists() and not (target / MARK).is_file():
        raise UsageError(f"{target}: exists and was not written by 'patchcore feedback export'; choose another --out or --category")
    counts = dict.fromkeys(PLACES, 0)
    with atomic_dir(target) as tmp:
        for place in PLACES.values():
            (tmp / place).mkdir(parents=True)
        for row in rows:
            source = state / "files" / row["id"] / f"image.{row['_suffix']}"
            shutil.copyfile(source, tmp / PLACES[row["review"]] / f"{row['id']}.{row['_suffix']}")
            counts[row["review"]] += 1
        about = {"state": str(state), "model": served, "reviewed": counts, "ids": [row["id"] for row in rows]}
        (tmp / MARK).write_text(json.dumps(about, indent=1, sort_keys=True) + "\n")
    return f"{target}: {counts['good']} good image(s) in train/good, {counts['defective']} defective in test/defective (from {state})"
