"""Stage `download`: one category of the selected data set under data/<dataset>/<category>/.

python -m stages.download --category C   (also: patchcore download)
"""

from __future__ import annotations

from pathlib import Path

import typer

from patchcore import command, config
from patchcore.config import Params

app = command.stage_app(__doc__)


@app.command()
def download(category: str = command.CATEGORY, params_file: Path = command.PARAMS) -> None:
    """Materialise one category of the data set under data/<dataset>/<category>/."""
    typer.echo(main(config.load(params_file), category))


def main(params: Params, category: str) -> str:
    # the library loads when the stage runs: `--help` and the CLI's other commands start at once
    from patchcore.datasets import materialise
    from patchcore.store import paths

    params.category(category)
    target = paths.data_dir(params.run.dataset, category)
    counts = materialise.run(params.dataset(), category, target)
    return f"data ready: {target} ({', '.join(f'{v} {k}' for k, v in counts.items())})"


if __name__ == "__main__":
    command.run(app)
