"""`patchcore feedback export`: the reviewed inspections of a service as a folder data set in MVTec layout.

Reviewed good images go to <category>/train/good, reviewed defective ones to
<category>/test/defective; add the folder as a `folder` source and `dvc repro` retrains on them.

Only the service's own files are read: the history opened read-only, every id, suffix and review
checked against what the service writes, each image reached without following a link. A reviewed
inspection whose image was deleted is skipped and named; a history or folder changed in any other
way is refused. The category folder is written whole or not at all.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from patchcore.apps.service.history import ID, MEDIA, REVIEWS, History
from patchcore.apps.service.state_folder import read_own
from patchcore.config.names import check_name
from patchcore.errors import UsageError
from patchcore.store.atomic import atomic_dir

PLACES = {"good": Path("train") / "good", "defective": Path("test") / "defective"}
MARK = "feedback.json"  # says a folder was written here, so a second export may replace it


def _checked(rows: list[dict], state: Path) -> list[dict]:
    """The rows as the service writes them, or one line naming the first that is not."""
    for row in rows:
        ident, suffix, review = row.get("id"), row.get("_suffix"), row.get("review")
        if not (isinstance(ident, str) and ID.match(ident)) or suffix not in MEDIA or review not in REVIEWS:
            shown = f"id {str(ident)[:40]!r}, suffix {str(suffix)[:20]!r}, review {str(review)[:20]!r}"
            raise UsageError(
                f"--state {state}: a history row ({shown}) was changed outside the service; nothing was exported"
            )
    return rows


def _read_image(files: Path, row: dict) -> bytes | None:
    """An inspection's uploaded image, or None when it is gone; a link anywhere on the way is refused."""
    try:
        return read_own(files, files / row["id"] / f"image.{row['_suffix']}")
    except ValueError as exc:
        raise UsageError(f"{exc}; nothing was exported") from None


def _target(out: Path, category: str) -> Path:
    if os.path.islink(out) or (out.exists() and not out.is_dir()):
        raise UsageError(f"--out {out}: is a file or a link, not a folder; name a folder for the data set")
    target = out / category
    if os.path.islink(target) or (target.exists() and not target.is_dir()):
        raise UsageError(f"{target}: is a file or a link; choose another --out or --category")
    if target.exists() and not (target / MARK).is_file():
        raise UsageError(
            f"{target}: exists and was not written by 'patchcore feedback export'; choose another --out or --category"
        )
    return target


def main(state: Path, out: Path, category: str | None) -> str:
    history = History(state, sweep=False, read_only=True)  # the server may be running and writing
    try:
        rows, served = _checked(history.reviewed(), state), history.model()
    finally:
        history.close()
    if not rows:
        raise UsageError(
            f"--state {state}: no reviewed inspections yet; mark images good or defective on the review page (or POST /v1/inspections/ID/review)"
        )
    category = category or (served.get("category") if isinstance(served.get("category"), str) else None) or "line"
    try:
        check_name(category)
    except ValueError as exc:
        raise UsageError(f"--category: {exc}") from None
    target = _target(out, category)
    counts = dict.fromkeys(PLACES, 0)
    skipped: list[str] = []
    files = state / "files"
    with atomic_dir(target) as tmp:
        for place in PLACES.values():
            (tmp / place).mkdir(parents=True)
        for row in rows:
            data = _read_image(files, row)
            if data is None:
                skipped.append(row["id"])
                continue
            (tmp / PLACES[row["review"]] / f"{row['id']}.{row['_suffix']}").write_bytes(data)
            counts[row["review"]] += 1
        if not any(counts.values()):
            raise UsageError(
                f"--state {state}: the images of all {len(rows)} reviewed inspections are missing; nothing was exported"
            )
        exported = [row["id"] for row in rows if row["id"] not in skipped]
        about = {"state": str(state), "model": served, "reviewed": counts, "ids": exported, "skipped_missing": skipped}
        (tmp / MARK).write_text(json.dumps(about, indent=1, sort_keys=True) + "\n")
    for ident in skipped:
        print(
            f"warning: inspection {ident}: its image is missing from {files} (deleted outside the service); skipped",
            file=sys.stderr,
        )
    return f"{target}: {counts['good']} good image(s) in train/good, {counts['defective']} defective in test/defective (from {state})"
