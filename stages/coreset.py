"""Stage `coreset`: the memory bank, a greedy coreset of the training patches (bank.h5).

python -m stages.coreset --category C --backbone B   (also: patchcore coreset)
"""

from __future__ import annotations

from pathlib import Path

import typer

from patchcore import command, config
from patchcore.config import Params

app = command.stage_app(__doc__)


@app.command()
def coreset(
    category: str = command.CATEGORY, backbone: str = command.BACKBONE, params_file: Path = command.PARAMS
) -> None:
    """Greedy coreset of the training patches: the memory bank (bank.h5)."""
    typer.echo(main(config.load(params_file), category, backbone))


def main(params: Params, category: str, backbone: str) -> str:
    # the library loads when the stage runs: `--help` and the CLI's other commands start at once
    from patchcore.pipeline import memory_bank
    from patchcore.store.model_folder import ModelFolder

    params.backbone(backbone)  # unknown names fail here with the allowed list
    params.category(category)
    folder = ModelFolder.of(params.run.dataset, category, backbone)
    folder.require((folder.train,), f"run 'patchcore extract --category {category} --backbone {backbone}' first")
    info = memory_bank.run(folder.train, folder.bank, params.coreset, folder.rebuild(folder.train))
    held = (
        f"{info['folds']}-fold banks for {info['holdout_images']} held-out images"
        if info["folds"]
        else f"{info['holdout_images']} images held out"
    )
    return f"memory bank: {info['bank_size']} of {info['train_patches']} patches on {info['device']} ({held}) -> {folder.bank}"


if __name__ == "__main__":
    command.run(app)
