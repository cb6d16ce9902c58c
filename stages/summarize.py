"""Stage `summarize`: the selected backbones x categories in metrics/summary.json, and the overlay plots.

python -m stages.summarize   (also: patchcore summarize)
"""

from __future__ import annotations

from pathlib import Path

import typer

from patchcore import command, config
from patchcore.config import Params

app = command.stage_app(__doc__)


@app.command()
def summarize(params_file: Path = command.PARAMS) -> None:
    """Collect the selected backbones x categories into metrics/summary.json."""
    typer.echo(main(config.load(params_file)))


def main(params: Params) -> str:
    # the library loads when the stage runs: `--help` and the CLI's other commands start at once
    from patchcore.core.tables import summarize as summary_table
    from patchcore.pipeline import summary
    from patchcore.store import paths
    from patchcore.store.atomic import write_json
    from patchcore.store.output_set import output_set

    run = params.run
    table = summary_table(run.dataset, summary.records(params))
    with output_set([paths.SUMMARY], [paths.OVERLAY]):  # the summary and the overlays change together
        summary.write_overlays(params)
        write_json(paths.SUMMARY, table)
    return "\n".join(
        f"{run.dataset} x {b} (weights: {table[b]['weights']}; features: {table[b]['features']}): "
        f"mean image AUROC {table[b]['mean']['image_auroc']}, "
        f"pixel AUROC {table[b]['mean']['pixel_auroc']}"
        for b in run.backbones
    )


if __name__ == "__main__":
    command.run(app)
