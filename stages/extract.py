"""Stage `extract`: patch features of every train and test image, streamed into HDF5."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import backbones as bb
from .backbones import LayerTap, LoadedBackbone, PatchFeatures, geometry
from .config import AggregationSettings, BackboneSettings, ExtractSettings, Params
from .datasets.images import image_transform, load_rgb
from .datasets.layout import Sample, list_split, subset
from .errors import UsageError
from .store import h5io, paths
from .store.atomic import atomic_path
from .store.model_folder import ModelFolder, fingerprint, fingerprint_attr


class _Images(Dataset):
    def __init__(self, root: Path, samples: list[Sample], settings: BackboneSettings):
        self.root, self.samples, self.transform = root, samples, image_transform(settings)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        image = load_rgb(self.root / self.samples[i].path)
        return self.transform(image), torch.tensor([image.height, image.width], dtype=torch.int32)


def write_split(
    out: Path,
    root: Path,
    samples: list[Sample],
    grid: tuple[int, int, int],
    features: PatchFeatures,
    batch_size: int,
    num_workers: int,
    attrs: dict,
    channels_last: bool = False,
) -> None:
    h, w, d = grid
    per_image = h * w
    loader = DataLoader(_Images(root, samples, features.settings), batch_size=batch_size, num_workers=num_workers, shuffle=False)
    with atomic_path(out, ".h5") as tmp:
        with h5io.create(tmp) as f:
            rows = h5io.create_rows(f, "patches", (len(samples) * per_image, d), per_image)
            sizes = np.zeros((len(samples), 2), dtype=np.int32)
            start = 0
            with torch.inference_mode():
                for images, hw in tqdm(loader, desc=f"extract {attrs['split']}", unit="batch"):
                    if channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    patches = features(images)
                    n = patches.shape[0]
                    rows[start * per_image : (start + n) * per_image] = patches.reshape(-1, d).numpy()
                    sizes[start : start + n] = hw.numpy()
                    start += n
            h5io.write_strings(f, "paths", [s.path for s in samples])
            h5io.write_array(f, "labels", np.array([s.label for s in samples], dtype=np.int8))
            h5io.write_strings(f, "defects", [s.defect for s in samples])
            h5io.write_strings(f, "masks", [s.mask for s in samples])
            h5io.write_array(f, "sizes", sizes)  # original (height, width) of each image
            h5io.set_attrs(f, {**attrs, "grid": np.array([h, w], dtype=np.int32)})


def run(
    root: Path,
    out_dir: Path,
    settings: BackboneSettings,
    loaded: LoadedBackbone,
    extract: ExtractSettings,
    aggregation: AggregationSettings,
    meta: dict,
) -> dict:
    """Extract both splits; return the image count and the seconds it took (for throughput)."""
    fraction = settings.train_fraction if settings.train_fraction is not None else extract.train_fraction
    # List and check both splits before any forward pass, so bad data fails before work starts.
    splits = {"train": subset(list_split(root, "train"), fraction), "test": list_split(root, "test")}
    if extract.channels_last:
        loaded.model.to(memory_format=torch.channels_last)
    features = PatchFeatures(LayerTap(loaded.model, settings.layers), settings, aggregation)
    grid = (*geometry(settings).grid, settings.target_dim)
    started = time.perf_counter()
    for split, samples in splits.items():
        attrs = {
            **meta,
            "split": split,
            "weights": loaded.weights,
            "train_fraction": fraction,
            "channels_last": extract.channels_last,
            "aggregation": features.attribute(),
            "fingerprint": fingerprint_attr(fingerprint(settings, loaded.weights, features.describe(), (grid[0], grid[1]))),
        }
        write_split(
            Path(out_dir) / f"{split}.h5", root, samples, grid, features, extract.batch_size, extract.num_workers, attrs, extract.channels_last
        )
    return {"images": sum(len(s) for s in splits.values()), "seconds": time.perf_counter() - started}


def main(params: Params, category: str, backbone: str) -> str:
    settings = params.backbone(backbone)
    params.category(category)
    root = paths.data_dir(params.run.dataset, category)
    if not root.is_dir():
        raise UsageError(f"data folder {root} not found; run 'patchcore download --category {category}' first")
    geometry(settings)  # architecture, layer names and input size checked at no cost
    loaded = bb.build(settings)
    folder = ModelFolder.of(params.run.dataset, category, backbone)
    meta = {"dataset": params.run.dataset, "category": category, "backbone": backbone, "arch": settings.arch}
    done = run(root, folder.root, settings, loaded, params.extract, params.aggregation, meta)
    return f"features written: {folder.root} ({done['images']} images in {done['seconds']:.1f} s, {done['images'] / done['seconds']:.1f} images/s)"
