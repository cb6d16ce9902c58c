"""Plot data that DVC draws (`dvc plots show / diff`): image ROC and precision-recall, the PRO curve,
the scores with their verdicts (DVC's confusion template), and the overlays of the backbones.

Every file is rounded to 6 decimals and written in a fixed order, so the same scores give the
same bytes and an unchanged evaluate leaves downstream stages alone.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from patchcore.core.localization import PixelCounts, pro_curve, region_shares
from patchcore.errors import UsageError
from patchcore.store.atomic import atomic_path, write_json

CURVES = {"roc": ("fpr", "tpr"), "pr": ("recall", "precision"), "pro": ("fpr", "pro")}  # file stem -> (x, y)


def _rows(x: np.ndarray, y: np.ndarray, names: tuple[str, str]) -> list[dict]:
    return [{names[0]: round(float(a), 6), names[1]: round(float(b), 6)} for a, b in zip(x, y)]


def image_curves(labels: np.ndarray, scores: np.ndarray) -> dict[str, list[dict]]:
    """ROC and precision-recall points of the image scores; empty without both good and defective images."""
    if len(np.unique(labels)) < 2:
        return {"roc": [], "pr": []}
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    # sklearn lists recall from high to low; the plot reads left to right
    return {"roc": _rows(fpr, tpr, CURVES["roc"]), "pr": _rows(recall[::-1], precision[::-1], CURVES["pr"])}


def pro_points(counts: PixelCounts | None) -> list[dict]:
    """The per-region-overlap curve over the whole FPR range (AUPRO integrates its start, up to max_fpr)."""
    if counts is None or len(counts.regions) == 0:
        return []
    fpr, pro = pro_curve(counts.neg.sum(0), region_shares(counts.regions))
    return _rows(fpr, pro, CURVES["pro"])


def write_curves(plots: Path, curves: dict[str, list[dict]]) -> None:
    for stem, rows in curves.items():
        write_json(plots / f"{stem}.json", {stem: rows})


def write_scores(
    out: Path, paths: list[str], labels: np.ndarray, scores: np.ndarray, anomalous: list[bool] | None
) -> None:
    """One row per test image; ``actual`` and ``predicted`` are what DVC's confusion template counts."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "label", "score", "anomalous", "actual", "predicted"])
    for i, (path, label, value) in enumerate(zip(paths, labels, scores)):
        verdict = None if anomalous is None else anomalous[i]
        predicted = "no threshold" if verdict is None else ("anomalous" if verdict else "good")
        writer.writerow(
            [
                path,
                int(label),
                f"{value:.6f}",
                "" if verdict is None else int(verdict),
                "defective" if label else "good",
                predicted,
            ]
        )
    with atomic_path(out, ".csv") as tmp:
        tmp.write_text(buffer.getvalue())


def overlay(per_backbone: dict[str, dict], stem: str) -> dict[str, list[dict]]:
    """One curve file's rows of every backbone, each row tagged with its backbone (the overlay template colours by
    it)."""
    return {
        stem: [{"backbone": backbone, **row} for backbone, data in per_backbone.items() for row in data.get(stem, [])]
    }


def read_curve(path: Path, stem: str, fix: str) -> list[dict]:
    """A curve file written by evaluate, checked for what the overlay uses (a list of rows of numbers)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise UsageError(f"{path}: cannot read plot data ({exc.__class__.__name__}); {fix}") from None
    x, y = CURVES[stem]
    rows = data.get(stem) if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and isinstance(r.get(x), (int, float)) and isinstance(r.get(y), (int, float)) for r in rows
    ):
        raise UsageError(
            f"{path}: expected {{'{stem}': [{{'{x}': number, '{y}': number}}, ...]}} as evaluate writes; {fix}"
        )
    return [{x: r[x], y: r[y]} for r in rows]
