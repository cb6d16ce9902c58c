"""Stage `summarize` (metrics/summary.json over the selection) and the metric gate of CI."""

from __future__ import annotations

from pathlib import Path

from .config import Params
from .core.tables import gate as compare
from .core.tables import summarize
from .errors import UsageError
from .store import metrics_files, paths, plot_data
from .store.atomic import atomic_dir, json_text, write_json
from .store.output_set import output_set, settle


def main(params: Params) -> str:
    run = params.run
    results: dict[str, dict[str, dict]] = {}
    read = [paths.metrics_file(run.dataset, c, b) for b in run.backbones for c in run.categories]
    read += [paths.plots_dir(run.dataset, c, b) / f"{stem}.json" for b in run.backbones for c in run.categories for stem in plot_data.CURVES]
    settle(read)  # an evaluate killed between its renames: its whole set, never new metrics beside old curves
    # Iterate the selection, not the folder: results of removed entries must not linger.
    for backbone in run.backbones:
        for category in run.categories:
            path = paths.metrics_file(run.dataset, category, backbone)
            if not path.is_file():
                raise UsageError(f"{path} not found; run 'patchcore evaluate --category {category} --backbone {backbone}' first")
            fix = f"rebuild it with 'dvc repro -f -s evaluate@{category}-{backbone}'"
            results.setdefault(backbone, {})[category] = metrics_files.read_record(path, fix)
    summary = summarize(run.dataset, results)
    with output_set([paths.SUMMARY], [paths.OVERLAY]):  # the summary and the overlays change together
        write_overlays(params)
        write_json(paths.SUMMARY, summary)
    return "\n".join(
        f"{run.dataset} x {b} (weights: {summary[b]['weights']}; features: {summary[b]['features']}): "
        f"mean image AUROC {summary[b]['mean']['image_auroc']}, "
        f"pixel AUROC {summary[b]['mean']['pixel_auroc']}"
        for b in run.backbones
    )


def write_overlays(params: Params) -> None:
    """plots/overlay/<curve>/<category>.json: every selected backbone's curve of a category in one file,
    so dvc.yaml's top-level plots draw the backbones in one chart (and `dvc plots diff` the revisions)."""
    run = params.run
    with atomic_dir(paths.OVERLAY) as tmp:
        for category in run.categories:
            per_backbone = {}
            for backbone in run.backbones:
                folder = paths.plots_dir(run.dataset, category, backbone)
                fix = f"rebuild it with 'dvc repro -f -s evaluate@{category}-{backbone}'"
                per_backbone[backbone] = {stem: plot_data.read_curve(folder / f"{stem}.json", stem, fix) for stem in plot_data.CURVES}
            for stem in plot_data.CURVES:
                out = tmp / paths.overlay_file(stem, category).relative_to(paths.OVERLAY)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json_text(plot_data.overlay(per_backbone, stem)))


def gate(current: Path, baseline: Path, tolerance: float) -> list[str]:
    fix = "pass the file written by 'patchcore summarize'"
    return compare(metrics_files.read_summary(current, fix), metrics_files.read_summary(baseline, fix), tolerance)
