"""Stage `summarize` (metrics/summary.json over the selection) and the metric gate of CI."""

from __future__ import annotations

from pathlib import Path

from .config import Params
from .core.tables import gate as compare
from .core.tables import summarize
from .errors import UsageError
from .store import metrics_files, paths
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
            fix = f"rebuild it with 'dvc repro -f -s evaluate@{category}-{backbone}'"
            results.setdefault(backbone, {})[category] = metrics_files.read_record(path, fix)
    summary = summarize(run.dataset, results)
    write_json(paths.SUMMARY, summary)
    return "\n".join(
        f"{run.dataset} x {b} (weights: {summary[b]['weights']}; features: {summary[b]['features']}): "
        f"mean image AUROC {summary[b]['mean']['image_auroc']}, "
        f"pixel AUROC {summary[b]['mean']['pixel_auroc']}"
        for b in run.backbones
    )


def gate(current: Path, baseline: Path, tolerance: float) -> list[str]:
    fix = "pass the file written by 'patchcore summarize'"
    return compare(metrics_files.read_summary(current, fix), metrics_files.read_summary(baseline, fix), tolerance)
