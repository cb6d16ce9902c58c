"""MVTec AD 2's private test sets scored by each scenario's deployed model into the benchmark server's submission
folder, checked as the owners' checker checks it before anyone uploads it."""

from __future__ import annotations

from pathlib import Path

from patchcore.benchmarks import mvtec_ad2
from patchcore.config import Params
from patchcore.errors import UsageError
from patchcore.model.loaded import TorchModel
from patchcore.store import paths
from patchcore.store.atomic import atomic_dir
from patchcore.store.model_folder import ModelFolder


def write(params: Params, backbone: str, out: Path, device: str = "auto") -> tuple[int, list[str]]:
    """The run's MVTec AD 2 scenarios (run.categories) scored by ``backbone``'s models into ``out`` (replaced whole);
    returns the maps written and what the server's checker would refuse (empty: ready to pack and upload)."""
    params.backbone(backbone)
    if params.dataset().source != "mvtec_ad2":
        raise UsageError(
            f"params.yaml: run.dataset '{params.run.dataset}' is not MVTec AD 2 (source mvtec_ad2); "
            "the submission is for its private test sets"
        )
    if out.exists() and (not out.is_dir() or {p.name for p in out.iterdir()} - {mvtec_ad2.MAPS, mvtec_ad2.MASKS}):
        raise UsageError(
            f"{out}: exists and is not a submission folder (it would be replaced whole); choose another --out"
        )
    written = 0
    with atomic_dir(out) as tmp:
        for category in params.run.categories:
            folder = ModelFolder.of(params.run.dataset, category, backbone)
            folder.require((folder.bank,), "run the pipeline first (dvc repro)")
            model = TorchModel(folder.root, device)
            data_root = paths.data_dir(params.run.dataset, category)
            written += mvtec_ad2.write_scenario(tmp, category, data_root, model, model.card.pixel_threshold)
    return written, mvtec_ad2.problems(out)
