"""The `patchcore` command: the pipeline's stage commands (each also `python -m stages.<name>`), and predict,
serve, feedback, the listings, the gate and the reports. Wiring only: a command imports its module when it runs,
so each command loads only its own code (a stage, only what dvc.yaml tracks for it)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from patchcore import command, config
from patchcore.apps.service import settings as service
from patchcore.errors import UsageError

# the stage commands live in stages/ (what dvc.yaml runs); imported when one is called, so a
# stage's code is never loaded by another command
STAGES = ("download", "extract", "coreset", "evaluate", "export", "summarize")


class _WithStages(TyperGroup):
    # click's types as Typer vendors them; Any keeps the overrides independent of where they live
    def list_commands(self, ctx: Any) -> list[str]:
        return [*STAGES, *super().list_commands(ctx)]

    def get_command(self, ctx: Any, name: str) -> Any:
        if name in STAGES:
            return typer.main.get_command(importlib.import_module(f"stages.{name}").app)
        return super().get_command(ctx, name)


app = typer.Typer(
    cls=_WithStages, add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help=__doc__
)


@app.command()
def predict(
    model: Path = typer.Argument(..., help="model folder: features/<dataset>/<category>/<backbone>"),
    images: list[Path] = typer.Argument(..., help="image files or folders"),
    out: Path = typer.Option(Path("predictions"), "--out", help="where predictions.jsonl and heatmaps/ go"),
    device: str = typer.Option("auto", "--device", help="auto (a GPU if torch sees one), cpu, cuda or cuda:N"),
    maps: str = typer.Option(
        "none", "--maps", help="also save each raw anomaly map at the original size: none, npy or tiff (float32)"
    ),
    runtime: str = typer.Option(
        "torch",
        "--runtime",
        help="torch (MODEL: a model folder), or onnx (MODEL: a model.onnx from 'patchcore export', run by onnxruntime)",
    ),
    params_file: Path = typer.Option(
        config.DEFAULT_PARAMS,
        "--params",
        help="only compared: the model folder's own settings are used, and differences are reported",
    ),
) -> None:
    """Score new images: one JSON line each (score, normalised score, verdict, defect regions, mask and heatmap
    PNGs)."""
    if maps not in ("none", "npy", "tiff"):
        raise UsageError(f"--maps must be none, npy or tiff, got {maps!r}")
    if runtime not in ("torch", "onnx"):
        raise UsageError(f"--runtime must be torch or onnx, got {runtime!r}")
    from patchcore.apps import predict as stage

    params, unread = None, ""
    if params_file.is_file():
        try:
            params = config.load(params_file)
        except UsageError as exc:  # only compared, never used: an unreadable one does not stop predict
            unread = f"; {params_file} not compared ({exc})"
    lines, failures, note = stage.main(model, images, out, params, device, maps, runtime)
    typer.echo(note + unread, err=True)
    for line in lines:
        typer.echo(line)
    for line in failures:
        typer.echo(f"error: {line}", err=True)
    if failures:
        raise typer.Exit(1)


@app.command()
def serve(
    model: Path = typer.Argument(
        ...,
        help="model folder (features/<dataset>/<category>/<backbone>), or with --runtime onnx an exported model.onnx or its folder",
    ),
    host: str = typer.Option(
        service.HOST, "--host", help="address to listen on; beyond loopback only with PATCHCORE_TOKEN set"
    ),
    port: int = typer.Option(service.PORT, "--port", help="TCP port"),
    runtime: str = typer.Option(
        "torch", "--runtime", help="torch (a model folder) or onnx (an exported file, run by onnxruntime)"
    ),
    state: Path = typer.Option(
        Path("state"), "--state", help="folder for the history (SQLite) and the inspected images and heatmaps"
    ),
    device: str = typer.Option("auto", "--device", help="torch runtime: auto, cpu, cuda or cuda:N"),
    max_batch: int = typer.Option(
        service.DEFAULT.max_batch, "--max-batch", help="most images scored in one forward pass"
    ),
    max_wait_ms: float = typer.Option(
        service.DEFAULT.max_wait_ms, "--max-wait-ms", help="longest a request waits for others to join its batch"
    ),
    max_upload_mb: int = typer.Option(
        service.DEFAULT.max_upload_mb, "--max-upload-mb", help="largest upload accepted, in MB"
    ),
) -> None:
    """An inspection service: POST /v1/inspect, history, reviews and a review page at /, the model loaded once."""
    from patchcore.apps import serve as stage

    stage.main(model, host, port, runtime, state, device, max_batch, max_wait_ms, max_upload_mb)


app.add_typer(
    feedback_app := typer.Typer(no_args_is_help=True, help="The service's reviews, back into the pipeline."),
    name="feedback",
)


@feedback_app.command("export")
def feedback_export(
    state: Path = typer.Option(Path("state"), "--state", help="the folder 'patchcore serve --state' used"),
    out: Path = typer.Option(
        ..., "--out", help="data set folder: <out>/<category>/train/good and test/defective are written"
    ),
    category: str = typer.Option(
        None, "--category", help="category folder name (default: the served model's category)"
    ),
) -> None:
    """Write the reviewed images as a folder data set in MVTec layout (reviewed good: train/good; defective:
    test/defective)."""
    from patchcore.apps import feedback as stage

    typer.echo(stage.main(state, out, category))


@app.command("classes")
def list_classes(data: Path = typer.Option(Path("data"), help="folder holding <dataset>/<category>/")) -> None:
    """List the MVTec AD classes and the categories present locally, with image counts."""
    from patchcore.apps import catalog

    typer.echo(catalog.classes(data))


@app.command("backbones")
def list_backbones(params_file: Path = command.PARAMS) -> None:
    """List the backbones of params.yaml: layers, feature dims, input size, weights and whether they are here."""
    from patchcore.apps import catalog

    typer.echo(catalog.backbones(config.load(params_file)))


@app.command()
def gate(
    current: Path = typer.Argument(..., help="metrics JSON produced now"),
    baseline: Path = typer.Argument(..., help="the committed metrics JSON"),
    tolerance: float = typer.Option(0.002, help="largest allowed change of any AUROC"),
) -> None:
    """Fail (exit 1) when any AUROC of BASELINE is missing from CURRENT or moved by more than the tolerance."""
    from patchcore.apps.gate import gate as check

    problems = check(current, baseline, tolerance)
    for line in problems:
        typer.echo(f"metric gate: {line}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"metric gate: every committed AUROC within {tolerance}")


@app.command("check-links")
def check_links(
    url: list[str] = typer.Option([], "--url", help="check these links instead of every known download link"),
) -> None:
    """Request the first byte of every known download link; exit 1 when one is dead (the monthly workflow)."""
    from patchcore.datasets import fetch, sources

    links = {"--url": tuple(url)} if url else sources.known_links()
    dead = 0
    for item, urls in links.items():
        for link in urls:
            problem = fetch.check_link(link)
            dead += problem is not None
            typer.echo(f"{'dead' if problem else 'ok  '} {item}: {link}{' (' + problem + ')' if problem else ''}")
    if dead:
        fix = f"put the current link first in patchcore/datasets/sources.py (MVTec lists them at {sources.MVTEC_PAGE})"
        typer.echo(f"{dead} dead link(s): {fix}", err=True)
        raise typer.Exit(1)


@app.command("ad2-submission")
def ad2_submission(
    backbone: str = command.BACKBONE,
    out: Path = typer.Option(Path("submissions/mvtec_ad2"), "--out", help="the submission folder (replaced whole)"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
    params_file: Path = command.PARAMS,
) -> None:
    """MVTec AD 2: score test_private and test_private_mixed of every scenario of run.categories with its model into
    the benchmark server's format, check it, and pack <out>.tar.gz when it is complete (exit 2 otherwise)."""
    from patchcore.apps import submission
    from patchcore.benchmarks import mvtec_ad2

    written, problems = submission.write(config.load(params_file), backbone, out, device)
    typer.echo(f"{written} maps written to {out}")
    _verdict(out, problems, mvtec_ad2.pack)


@app.command("ad2-check")
def ad2_check(folder: Path = typer.Argument(..., help="a submission folder")) -> None:
    """Check an MVTec AD 2 submission folder as the owners' checker does; exit 2 naming each problem."""
    from patchcore.benchmarks import mvtec_ad2

    _verdict(folder, mvtec_ad2.problems(folder), None)


def _verdict(folder: Path, problems: list[str], pack) -> None:
    for line in problems[:20]:
        typer.echo(f"not ready: {line}", err=True)
    if problems:
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        typer.echo(f"error: {folder}: {len(problems)} problem(s) the server's checker refuses{more}", err=True)
        raise typer.Exit(2)
    typer.echo(f"{folder}: ready to upload" + (f" as {pack(folder)}" if pack else ""))


@app.command("plots-report")
def plots_report(
    revisions: list[str] = typer.Argument(
        None, help="git revisions to compare the workspace with (none: the workspace alone)"
    ),
    out: Path = typer.Option(Path("plots-report"), "--out", help="folder for the PNGs and plots.md (replaced whole)"),
    targets: list[str] = typer.Option([], "--targets", help="plot files or ids of dvc.yaml (default: all)"),
) -> None:
    """Render `dvc plots diff` (or `dvc plots show`) as PNG pictures and a markdown page, offline (vl-convert)."""
    from patchcore.apps.reports import plots_report as report

    typer.echo(report.render(revisions or [], out, targets))


@app.command()
def compare(
    category: str = command.CATEGORY,
    out: Path = typer.Option(Path("plots/train_fraction.png"), "--out", help="the figure (PNG)"),
    rev: str = typer.Option(None, "--rev", help="experiments of this baseline commit (default: HEAD's)"),
    all_commits: bool = typer.Option(False, "--all-commits", "-A", help="experiments of every commit"),
) -> None:
    """Image AUROC against the training fraction per backbone, from `dvc exp show --json`, with the 95% intervals as
    bands."""
    from patchcore.apps.reports import compare as report

    typer.echo(report.main(category, out, rev, all_commits))


def main() -> None:
    command.run(app)


if __name__ == "__main__":
    main()
