"""Stage `coreset`: the memory bank, a greedy coreset of the training patches.

A seeded share of the training images is held out of the bank; evaluate scores them to set
the decision threshold without looking at any test label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .config import CoresetSettings, Params
from .core import devices, torch_kcenter
from .core.sampling import (
    coreset_size,
    greedy_kcenter,
    project,
    projection_matrix,
    start_index,
)
from .datasets.layout import seeded_share
from .errors import UsageError
from .store import h5io
from .store.atomic import atomic_path
from .store.model_folder import ModelFolder

CPU = torch.device("cpu")
READ_ROWS = 32768  # rows per HDF5 read: 128 MiB at 1024 dims, whatever the image size


def holdout_images(n_images: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the training images kept out of the bank."""
    if fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    held = seeded_share(n_images, fraction, seed)
    if len(held) >= n_images:
        raise UsageError(f"coreset.holdout_fraction {fraction} leaves no training image for the memory bank ({n_images} images); lower it")
    return held


def run(train_h5: Path, out: Path, settings: CoresetSettings, fix: str = "rebuild it with 'dvc repro'") -> dict:
    device = devices.resolve(settings.device, "coreset.device")
    with h5io.reading(train_h5, fix, datasets=("patches", "labels"), attrs=("fingerprint",)) as f:
        patches = f["patches"]
        n, d = patches.shape
        n_images = f["labels"].shape[0]
        per_image = n // n_images
        held = holdout_images(n_images, settings.holdout_fraction, settings.seed)
        bank_images = np.setdiff1d(np.arange(n_images), held)
        kept_rows = (bank_images[:, None] * per_image + np.arange(per_image)[None]).ravel()

        def blocks():
            # contiguous row ranges of the bank images, read in bounded slices (no copies)
            for start, stop in h5io.image_runs(bank_images, per_image):
                for a in range(start, stop, READ_ROWS):
                    yield patches[a : min(stop, a + READ_ROWS)]

        matrix = projection_matrix(d, settings.projection_dim, settings.seed)
        n_pick, start = coreset_size(len(kept_rows), settings.ratio), start_index(len(kept_rows), settings.seed)
        if not torch_kcenter.on_device(device, len(kept_rows)):
            device = CPU
            picks = greedy_kcenter(project(blocks(), matrix), n_pick, start)
        else:
            with tqdm(total=n_pick, desc=f"coreset on {device}", unit="pick", mininterval=1.0) as bar:
                picks = torch_kcenter.greedy_kcenter(torch_kcenter.project(blocks(), matrix, device), n_pick, start, device, bar.update)
        order = np.sort(kept_rows[picks])
        bank = h5io.take_rows(patches, order)
        attrs = {k: f.attrs[k] for k in f.attrs if k != "split"}
    with atomic_path(out, ".h5") as tmp:
        with h5io.create(tmp) as g:
            h5io.write_array(g, "bank", bank)
            h5io.write_array(g, "indices", order)
            h5io.write_array(g, "holdout_images", held)
            h5io.set_attrs(
                g,
                {
                    **attrs,
                    "coreset_ratio": settings.ratio,
                    "projection_dim": settings.projection_dim,
                    "seed": settings.seed,
                    "train_patches": len(kept_rows),
                    "holdout_fraction": settings.holdout_fraction,
                    "coreset_device": devices.describe(device),  # the one that selected (a small bank stays on the CPU)
                },
            )
    return {"bank_size": int(len(order)), "train_patches": int(len(kept_rows)), "holdout_images": int(len(held)), "device": devices.describe(device)}


def main(params: Params, category: str, backbone: str) -> str:
    params.backbone(backbone)  # unknown names fail here with the allowed list
    params.category(category)
    folder = ModelFolder.of(params.run.dataset, category, backbone)
    folder.require((folder.train,), f"run 'patchcore extract --category {category} --backbone {backbone}' first")
    info = run(folder.train, folder.bank, params.coreset, folder.rebuild(folder.train))
    return f"memory bank: {info['bank_size']} of {info['train_patches']} patches on {info['device']} -> {folder.bank}"
