"""`patchcore compare`: image AUROC against the training fraction, per backbone, from `dvc exp show --json`.

The seed's experiment (does CLIP RN50x16 beat WRN50 on a quarter of the training set?) is a
grid of DVC experiments over `extract.train_fraction`, each running every backbone of
`run.backbones`. Only experiments that differ from their baseline commit in the training
fraction and the run selection are points of the grid: one that changed anything else (a
coreset ratio, a backbone's settings) answers another question and is left out, and said so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from patchcore.apps.reports.dvc_json import committed_json, dvc_json
from patchcore.errors import UsageError
from patchcore.store import paths

GRID_KEYS = ("extract.train_fraction", "run.backbones", "run.categories")


@dataclass(frozen=True)
class Point:
    backbone: str
    fraction: float
    auroc: float | None
    ci95: tuple[float, float] | None
    train_images: int | None
    experiment: str
    weights: str
    data: str  # the data set, category and where it came from


def _flat(obj: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(obj, dict):
        return {prefix.rstrip("."): obj}
    out: dict[str, object] = {}
    for key, value in obj.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def _runs(entry: dict) -> list[dict]:
    """Every experiment under one commit of a `dvc exp show --json` answer."""
    groups = [g for g in entry.get("experiments") or [] if isinstance(g, dict)]
    return [run for g in groups for run in g.get("revs") or [] if isinstance(run, dict)]


def _params(run: dict) -> dict[str, object]:
    data = run.get("data") or {}
    return _flat(((data.get("params") or {}).get("params.yaml") or {}).get("data") or {})


def _name(run: dict) -> str:
    return str(run.get("name") or str(run.get("rev", "?"))[:7])


def _differs_outside_grid(params: dict, base: dict) -> list[str]:
    changed = {k for k in set(params) | set(base) if params.get(k) != base.get(k)}
    return sorted(
        k for k in changed if k not in GRID_KEYS and not (k.startswith("backbones.") and k.endswith(".train_fraction"))
    )


def points(answer: object, category: str) -> tuple[list[Point], list[str]]:
    """The grid's points for ``category`` and the experiments left out (with why)."""
    if not isinstance(answer, list):
        raise UsageError(
            "'dvc exp show --json' answered something other than a list of commits; is this a DVC project?"
        )
    found, skipped = [], []
    for entry in answer:
        for run in _runs(entry) if isinstance(entry, dict) else []:
            name, params = _name(run), _params(run)
            if run.get("error"):  # dvc's mark of a failed run: {"msg": "Experiment run failed", ...}
                error = run.get("error") or {}
                said = error.get("msg", error) if isinstance(error, dict) else error
                raise UsageError(
                    f"experiment {name} (extract.train_fraction {params.get('extract.train_fraction')}) failed ({said or 'no message'}); "
                    f"see 'dvc exp show', remove it with 'dvc exp remove {name}' or run it again"
                )
            other = _differs_outside_grid(params, _params(entry))
            if other:
                skipped.append(f"{name} (also changes {', '.join(other[:3])})")
                continue
            categories = params.get("run.categories")
            if not isinstance(categories, list) or category not in categories:
                skipped.append(f"{name} (run.categories has no {category})")
                continue
            found += _points_of(run, name, params, category)
    return found, skipped


def _points_of(run: dict, name: str, params: dict, category: str) -> list[Point]:
    metrics = ((run.get("data") or {}).get("metrics")) or {}
    dataset = str(params.get("run.dataset"))
    out = []
    for backbone in params.get("run.backbones") or []:
        path = paths.metrics_file(dataset, category, str(backbone)).as_posix()
        if not isinstance((metrics.get(path) or {}).get("data"), dict):
            raise UsageError(
                f"experiment {name} has no {path}: that grid point did not finish; run it again (dvc exp run) or remove it (dvc exp remove {name})"
            )
        # dvc's table drops list values such as the intervals: the experiment's commit holds the whole record
        record = committed_json(str(run.get("rev")), path)
        if not isinstance(record, dict):
            raise UsageError(f"{path} in experiment {name} is not a metrics record; rerun it")
        fraction = params.get(f"backbones.{backbone}.train_fraction", params.get("extract.train_fraction"))
        ci = (record.get("ci95") or {}).get("image_auroc")
        raw = record.get("data")
        data: dict = raw if isinstance(raw, dict) else {}
        origin = f"{dataset}/{category} ({data.get('source', 'source unknown')}: {data.get('location', '?')})"
        auroc, images = record.get("image_auroc"), record.get("train_images")
        out.append(
            Point(
                str(backbone),
                float(fraction),  # type: ignore[arg-type]
                auroc,
                tuple(ci) if ci else None,
                images,
                name,
                str(record.get("weights")),
                origin,
            )
        )
    return out


def table(grid: list[Point]) -> str:
    """Markdown: one row per training fraction, one column per backbone (AUROC [95% interval], training images)."""
    backbones = sorted({p.backbone for p in grid})
    cell = {(p.fraction, p.backbone): p for p in grid}
    lines = ["| train fraction | " + " | ".join(backbones) + " |", "|---" * (len(backbones) + 1) + "|"]
    for fraction in sorted({p.fraction for p in grid}, reverse=True):
        row = []
        for b in backbones:
            p = cell.get((fraction, b))
            if p is None or p.auroc is None:
                row.append("-")
            else:
                ci = f" [{p.ci95[0]:.4f}, {p.ci95[1]:.4f}]" if p.ci95 else ""
                row.append(f"{p.auroc:.4f}{ci} ({p.train_images} images)")
        lines.append(f"| {fraction:g} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def report(answer: object, category: str, out: Path, source: str) -> str:
    """The figure and the table from a `dvc exp show --json` answer (``source`` names the command, for messages)."""
    grid, skipped = points(answer, category)
    if not grid:
        why = f"; left out: {'; '.join(skipped)}" if skipped else ""
        raise UsageError(
            f"no experiments of the train-fraction grid with {category} in '{source}'{why}; queue them as README 'The seed's experiment' shows"
        )
    unique: dict[tuple[str, float], Point] = {}
    for p in grid:  # dvc lists the newest first: an older run of the same point is left out
        unique.setdefault((p.backbone, p.fraction), p)
    from patchcore.store.figures import fraction_figure  # matplotlib only once there is something to draw

    chosen = sorted(unique.values(), key=lambda p: (p.backbone, p.fraction))
    origins = "; ".join(sorted({p.data for p in chosen}))
    fraction_figure(
        out, f"image AUROC against the training fraction\n{origins}", chosen, {p.backbone: p.weights for p in chosen}
    )
    note = f"\nleft out: {'; '.join(skipped)}" if skipped else ""
    weights = "".join(f"\n{b}: {w}" for b, w in sorted({(p.backbone, p.weights) for p in chosen}))
    return f"{origins}{weights}\n{table(chosen)}\n{len(chosen)} points from {len({p.experiment for p in chosen})} experiments -> {out}{note}"


def main(category: str, out: Path, revision: str | None, all_commits: bool) -> str:
    args = (
        ["exp", "show", "--all-commits"] if all_commits else ["exp", "show", *(["--rev", revision] if revision else [])]
    )
    return report(dvc_json(*args), category, out, f"dvc {' '.join(args)}")
