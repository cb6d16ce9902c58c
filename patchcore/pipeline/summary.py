"""What summarize reads and draws: every selected category's record, and the backbones' curves of a category in one
plot."""

from __future__ import annotations

from patchcore.config import Params
from patchcore.errors import UsageError
from patchcore.store import metrics_files, paths, plot_data
from patchcore.store.atomic import atomic_dir, json_text
from patchcore.store.output_set import settle


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
                per_backbone[backbone] = {
                    stem: plot_data.read_curve(folder / f"{stem}.json", stem, fix) for stem in plot_data.CURVES
                }
            for stem in plot_data.CURVES:
                out = tmp / paths.overlay_file(stem, category).relative_to(paths.OVERLAY)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json_text(plot_data.overlay(per_backbone, stem)))


def records(params: Params) -> dict[str, dict[str, dict]]:
    """Every selected backbone x category's metrics record, read whole (a killed evaluate's set completed first)."""
    run = params.run
    results: dict[str, dict[str, dict]] = {}
    read = [paths.metrics_file(run.dataset, c, b) for b in run.backbones for c in run.categories]
    read += [
        paths.plots_dir(run.dataset, c, b) / f"{stem}.json"
        for b in run.backbones
        for c in run.categories
        for stem in plot_data.CURVES
    ]
    settle(read)  # an evaluate killed between its renames: its whole set, never new metrics beside old curves
    # Iterate the selection, not the folder: results of removed entries must not linger.
    for backbone in run.backbones:
        for category in run.categories:
            path = paths.metrics_file(run.dataset, category, backbone)
            if not path.is_file():
                raise UsageError(
                    f"{path} not found; run 'patchcore evaluate --category {category} --backbone {backbone}' first"
                )
            fix = f"rebuild it with 'dvc repro -f -s evaluate@{category}-{backbone}'"
            results.setdefault(backbone, {})[category] = metrics_files.read_record(path, fix)
    return results
