"""Stage `summarize` (metrics/summary.json over the selection) and the metric gate of CI."""

from __future__ import annotations

import json
from pathlib import Path

from .config import Params
from .core.tables import gate as compare
from .core.tables import summarize
from .errors import UsageError
from .store import paths
from .store.atomic import write_json


def main(params: Params) -> str:
    run = params.run
    results: dict[str, dict[str, dict]] = {}
    # Iterate the selection, not the folder: results of removed entries must not linger.
    for backbone in run.backbones:
        for category in run.categories:
            path = paths.metrics_file(run.dataset, category, backbone)
            if not path.is_file():
                raise UsageError(f"{path} not found; run 'patchcore evaluate --category {category} --backbone {backbone}' first")
            try:
                results.setdefault(backbone, {})[category] = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise UsageError(
                    f"{path}: corrupt metrics file ({exc.__class__.__name__}); rebuild it with 'dvc repro -f -s evaluate@{category}-{backbone}'"
                ) from None
    summary = summarize(run.dataset, results)
    write_json(paths.SUMMARY, summary)
    return "\n".join(
        f"{run.dataset} x {b} (weights: {summary[b]['weights']}; features: {summary[b]['features']}): "
        f"mean image AUROC {summary[b]['mean']['image_auroc']}, "
        f"pixel AUROC {summary[b]['mean']['pixel_auroc']}"
        for b in run.backbones
    )


def gate(current: Path, baseline: Path, tolerance: float) -> list[str]:
    docs = []
    for path in (current, baseline):
        try:
            docs.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{path}: cannot read metrics JSON ({exc.__class__.__name__}); pass the file written by 'patchcore summarize'") from None
    return compare(docs[0], docs[1], tolerance)
