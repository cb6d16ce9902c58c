"""Stage `extract`: patch features of every train and test image, streamed into HDF5.

python -m stages.extract --category C --backbone B   (also: patchcore extract)
"""

from __future__ import annotations

from pathlib import Path

import typer

from patchcore import command, config
from patchcore.config import Params

app = command.stage_app(__doc__)


@app.command()
def extract(
    category: str = command.CATEGORY, backbone: str = command.BACKBONE, params_file: Path = command.PARAMS
) -> None:
    """Patch features of the train and test images, into features/<dataset>/<category>/<backbone>/."""
    typer.echo(main(config.load(params_file), category, backbone))


def main(params: Params, category: str, backbone: str) -> str:
    # the library loads when the stage runs: `--help` and the CLI's other commands start at once
    from patchcore import backbones
    from patchcore.engines import settings as engines
    from patchcore.errors import UsageError
    from patchcore.pipeline import extraction
    from patchcore.store import paths
    from patchcore.store.model_folder import ModelFolder

    settings = params.backbone(backbone)
    params.category(category)
    root = paths.data_dir(params.run.dataset, category)
    if not root.is_dir():
        raise UsageError(f"data folder {root} not found; run 'patchcore download --category {category}' first")
    backbones.geometry(settings)  # architecture, layer names and input size checked at no cost
    loaded = backbones.build(settings)
    folder = ModelFolder.of(params.run.dataset, category, backbone)
    meta = {"dataset": params.run.dataset, "category": category, "backbone": backbone, "arch": settings.arch}
    engine = engines.from_env()
    done = extraction.run(root, folder.root, settings, loaded, params.extract, params.aggregation, meta, engine)
    rate = f"{done['images']} images in {done['seconds']:.1f} s, {done['images'] / done['seconds']:.1f} images/s"
    return f"features written: {folder.root} ({rate}, engine {engine.engine})"


if __name__ == "__main__":
    command.run(app)
