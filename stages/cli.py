"""The `patchcore` command: one subcommand per pipeline stage.

Every command validates its parameters before doing any work, and reports bad
input as one line on stderr with exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from . import params as P
from . import paths
from .errors import UsageError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help=__doc__)

PARAMS = typer.Option(P.DEFAULT_PARAMS, "--params", help="params.yaml to read")
CATEGORY = typer.Option(..., "--category", "-c", help="category name, one of params.yaml run.categories")
BACKBONE = typer.Option(..., "--backbone", "-b", help="backbone name, a key of params.yaml backbones")


def _selected(params: dict, category: str | None = None) -> P.RunSelection:
    run = P.run_selection(params)
    if category is not None and category not in run.categories:
        raise UsageError(f"category '{category}' is not in params.yaml run.categories ({', '.join(run.categories)}); add it there")
    return run


@app.command()
def download(category: str = CATEGORY, params_file: Path = PARAMS) -> None:
    """Materialise one category of the data set under data/<dataset>/<category>/."""
    from . import download as stage

    params = P.load(params_file)
    run = _selected(params, category)
    spec = P.dataset_spec(params, run.dataset)
    counts = stage.run(spec, category, paths.data_dir(run.dataset, category))
    typer.echo(f"data ready: {paths.data_dir(run.dataset, category)} ({', '.join(f'{v} {k}' for k, v in counts.items())})")


@app.command()
def extract(category: str = CATEGORY, backbone: str = BACKBONE, params_file: Path = PARAMS) -> None:
    """Patch features of the train and test images, into features/<dataset>/<category>/<backbone>/."""
    from . import backbones
    from . import extract as stage

    params = P.load(params_file)
    settings = P.backbone_settings(params, backbone)  # unknown names fail here with the allowed list
    run = _selected(params, category)
    ex = P.extract_settings(params)
    root = paths.data_dir(run.dataset, category)
    if not root.is_dir():
        raise UsageError(f"data folder {root} not found; run 'patchcore download --category {category}' first")
    backbones.geometry(settings)  # architecture, layer names and input size checked at no cost
    loaded = backbones.build(settings)
    meta = {"dataset": run.dataset, "category": category, "backbone": backbone, "arch": settings.arch}
    done = stage.run(root, paths.feature_dir(run.dataset, category, backbone), settings, loaded, ex, meta)
    typer.echo(
        f"features written: {paths.feature_dir(run.dataset, category, backbone)} "
        f"({done['images']} images in {done['seconds']:.1f} s, {done['images'] / done['seconds']:.1f} images/s)"
    )


@app.command()
def coreset(category: str = CATEGORY, backbone: str = BACKBONE, params_file: Path = PARAMS) -> None:
    """Greedy coreset of the training patches: the memory bank (bank.h5)."""
    from . import coreset as stage

    params = P.load(params_file)
    P.backbone_settings(params, backbone)  # unknown names fail here with the allowed list
    run = _selected(params, category)
    settings = P.coreset_settings(params)
    folder = paths.feature_dir(run.dataset, category, backbone)
    train = folder / "train.h5"
    if not train.is_file():
        raise UsageError(f"{train} not found; run 'patchcore extract --category {category} --backbone {backbone}' first")
    info = stage.run(train, folder / "bank.h5", settings)
    typer.echo(f"memory bank: {info['bank_size']} of {info['train_patches']} patches -> {folder / 'bank.h5'}")


@app.command()
def evaluate(category: str = CATEGORY, backbone: str = BACKBONE, params_file: Path = PARAMS) -> None:
    """Score the test images against the bank; write metrics/<dataset>/<backbone>/<category>.json."""
    from . import evaluate as stage
    from .atomic import write_json

    params = P.load(params_file)
    bb = P.backbone_settings(params, backbone)  # unknown names fail here with the allowed list
    run = _selected(params, category)
    settings = P.evaluate_settings(params)
    folder = paths.feature_dir(run.dataset, category, backbone)
    for name in ("train.h5", "test.h5", "bank.h5"):
        if not (folder / name).is_file():
            raise UsageError(f"{folder / name} not found; run the extract and coreset stages first (dvc repro)")
    record = stage.run(
        folder / "train.h5", folder / "test.h5", folder / "bank.h5", paths.data_dir(run.dataset, category), bb, settings,
        paths.plots_dir(run.dataset, category, backbone), folder / "model.json",
    )
    out = paths.metrics_file(run.dataset, category, backbone)
    write_json(out, record)
    typer.echo(
        f"{run.dataset}/{category} x {backbone}: image AUROC {record['image_auroc']}, pixel AUROC {record['pixel_auroc']}, "
        f"AUPRO {record['aupro']} -> {out}"
    )


@app.command()
def predict(
    model: Path = typer.Argument(..., help="model folder: features/<dataset>/<category>/<backbone>"),
    images: list[Path] = typer.Argument(..., help="image files or folders"),
    out: Path = typer.Option(Path("predictions"), "--out", help="where predictions.jsonl and heatmaps/ go"),
    params_file: Path = PARAMS,
) -> None:
    """Score new images: one JSON line each (score, normalised score, verdict, heatmap PNG)."""
    from . import predict as stage

    params = P.load(params_file) if params_file.is_file() else None
    records, failures = stage.run(model, images, out, params)
    for record in records:
        typer.echo(json.dumps(record, sort_keys=True))
    for line in failures:
        typer.echo(f"error: {line}", err=True)
    if failures:
        raise typer.Exit(1)


@app.command()
def summarize(params_file: Path = PARAMS) -> None:
    """Collect the selected backbones x categories into metrics/summary.json."""
    from .atomic import write_json
    from .summary import summarize as build

    run = _selected(P.load(params_file))
    results: dict[str, dict[str, dict]] = {}
    # Iterate the selection, not the folder: results of removed entries must not linger.
    for backbone in run.backbones:
        for category in run.categories:
            path = paths.metrics_file(run.dataset, category, backbone)
            if not path.is_file():
                raise UsageError(f"{path} not found; run 'patchcore evaluate --category {category} --backbone {backbone}' first")
            results.setdefault(backbone, {})[category] = json.loads(path.read_text())
    summary = build(run.dataset, results)
    write_json(paths.SUMMARY, summary)
    for backbone in run.backbones:
        mean = summary[backbone]["mean"]
        typer.echo(f"{run.dataset} x {backbone} (weights: {summary[backbone]['weights']}): mean image AUROC {mean['image_auroc']}, pixel AUROC {mean['pixel_auroc']}")


@app.command("classes")
def list_classes(data: Path = typer.Option(Path("data"), help="folder holding <dataset>/<category>/")) -> None:
    """List the MVTec AD classes and the categories present locally, with image counts."""
    from .dataset import list_split
    from .sources import MVTEC

    typer.echo(f"MVTec AD classes ({len(MVTEC)}), source 'mvtec' (train/good, test good, test defective, defect types):")
    for name, c in MVTEC.items():
        typer.echo(f"  {name:<11} {c.train_good:>4} {c.test_good:>4} {c.test_defective:>4} {c.defect_types:>2}")
    typer.echo(f"local categories under {data}/:")
    found = False
    for root in sorted(p for p in data.glob("*/*") if (p / "train").is_dir()):
        found = True
        try:
            train, test = list_split(root, "train"), list_split(root, "test")
        except UsageError as exc:
            typer.echo(f"  {root.relative_to(data)}: unusable ({exc})")
            continue
        defective = [s for s in test if s.label]
        typer.echo(
            f"  {root.relative_to(data)}: {len(train)} train/good, {len(test) - len(defective)} test good, "
            f"{len(defective)} test defective, {sum(1 for s in defective if s.mask)} masks"
        )
    if not found:
        typer.echo("  none yet: run 'dvc repro' or 'patchcore download -c CATEGORY'")


@app.command("backbones")
def list_backbones(params_file: Path = PARAMS) -> None:
    """List the backbones of params.yaml: layers, feature dims, input size, weights and whether they are here."""
    from . import backbones

    params = P.load(params_file)
    rows = [("name", "architecture", "layers", "channels", "stride", "input", "patch grid x dim", "weights", "available")]
    for name in P._section(params, "backbones"):
        s = P.backbone_settings(params, name)
        geo = backbones.geometry(s)
        status = backbones.weights_status(s)
        rows.append((
            name,
            s.arch,
            "+".join(s.layers),
            "+".join(map(str, geo.channels)),
            "/".join(map(str, geo.strides)),
            f"{s.resize}->{s.crop}",
            f"{geo.grid[0]}x{geo.grid[1]}x{s.target_dim}",
            status.source,
            "yes" if status.available else "no (download or set weights: PATH)",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@app.command()
def gate(
    current: Path = typer.Argument(..., help="metrics JSON produced now"),
    baseline: Path = typer.Argument(..., help="the committed metrics JSON"),
    tolerance: float = typer.Option(0.002, help="largest allowed change of any AUROC"),
) -> None:
    """Fail (exit 1) when any AUROC of BASELINE is missing from CURRENT or moved by more than the tolerance."""
    from .summary import gate as check

    docs = []
    for path in (current, baseline):
        try:
            docs.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{path}: cannot read metrics JSON ({exc.__class__.__name__}); pass the file written by 'patchcore summarize'") from None
    problems = check(docs[0], docs[1], tolerance)
    for line in problems:
        typer.echo(f"metric gate: {line}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"metric gate: every committed AUROC within {tolerance}")


def main() -> None:
    try:
        app()
    except UsageError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
