"""Bench data from the bundled photos (a category whose training set is enlarged by flips and
rotations), and the real extract stage run on it with the project's params."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def build_category(dest: Path, variants: int, suffix: str = ".png") -> int:
    """Test images and masks as bundled; each training photo in ``variants`` (1-8) flips/rotations."""
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(REPO / "data/bundled/hazelnut_toy.tar.gz") as tar:
            tar.extractall(tmp, filter="data")
        src = Path(tmp) / "hazelnut_toy"
        shutil.copytree(src / "test", dest / "test")
        shutil.copytree(src / "ground_truth", dest / "ground_truth")
        (dest / "train/good").mkdir(parents=True)
        n = 0
        for photo in sorted((src / "train/good").iterdir()):
            with Image.open(photo) as im:
                im = im.convert("RGB")
                for k, op in enumerate([None, *Image.Transpose][:variants]):
                    (im if op is None else im.transpose(op)).save(dest / "train/good" / f"{photo.stem}_{k}{suffix}")
                    n += 1
    return n


def extract_params(backbone: str, random_weights: bool = False):
    """(BackboneSettings, ExtractSettings) of params.yaml, as the extract stage reads them;
    ``random_weights`` for a backbone whose published weights this machine cannot download
    (speed and memory do not depend on the weights' values)."""
    from patchcore import config

    params = config.load(REPO / "params.yaml")
    settings = params.backbone(backbone)
    if random_weights:
        settings = settings.model_copy(update={"weights": "random"})
    return settings, params.extract


def run_extract(root: Path, out: Path, settings, cfg) -> dict:
    """The extract stage on a bench category, with a freshly built backbone and params.yaml's
    aggregation: {"images", "seconds"}."""
    from patchcore import backbones, config
    from patchcore.pipeline import extraction

    aggregation = config.load(REPO / "params.yaml").aggregation
    meta = {"dataset": "bench", "category": root.name, "backbone": settings.name, "arch": settings.arch}
    return extraction.run(root, out, settings, backbones.build(settings), cfg, aggregation, meta)
