"""The features extract writes: every train and test image's patch features, streamed into HDF5 on the chosen engine."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from patchcore import backbones as bb
from patchcore.backbones import LayerTap, LoadedBackbone, PatchFeatures, geometry, stream
from patchcore.config import AggregationSettings, BackboneSettings, ExtractSettings
from patchcore.core import devices
from patchcore.datasets.images import check_pixels, checked_views, readable
from patchcore.datasets.layout import VALIDATION, Sample, list_split, subset
from patchcore.engines.settings import EngineSettings
from patchcore.store import h5io
from patchcore.store.atomic import atomic_path
from patchcore.store.model_folder import fingerprint, fingerprint_attr
from patchcore.store.output_set import output_set


def write_split(
    out: Path, samples: list[Sample], grid: tuple[int, int, int], batches: Iterator, attrs: dict, views: np.ndarray
) -> None:
    """Write the patch features of ``samples``, given as (patches, Started) batches in order, and their labels;
    ``views`` holds each image's number of network inputs (written when any has more than one)."""
    h, w, d = grid
    per_view = h * w
    total = int(views.sum())
    with atomic_path(out, ".h5") as tmp:
        with h5io.create(tmp) as f:
            rows = h5io.create_rows(f, "patches", (total * per_view, d), per_view)
            sizes = np.zeros((len(samples), 2), dtype=np.int32)
            done, images = 0, 0
            with tqdm(total=len(samples), desc=f"extract {attrs['split']}", unit="image") as bar:
                for patches, started in batches:
                    n, k = patches.shape[0], len(started.sizes)
                    rows[done * per_view : (done + n) * per_view] = np.asarray(patches).reshape(-1, d)
                    sizes[images : images + k] = np.asarray(started.sizes)
                    done, images = done + n, images + k
                    bar.update(k)
            h5io.write_strings(f, "paths", [s.path for s in samples])
            h5io.write_array(f, "labels", np.array([s.label for s in samples], dtype=np.int8))
            h5io.write_strings(f, "defects", [s.defect for s in samples])
            h5io.write_strings(f, "masks", [s.mask for s in samples])
            h5io.write_array(f, "sizes", sizes)  # original (height, width) of each image
            if total != len(samples):  # tiles: which rows are whose (their boxes follow from the sizes)
                h5io.write_array(f, "views", views.astype(np.int32))
            h5io.set_attrs(f, {**attrs, "grid": np.array([h, w], dtype=np.int32)})


def count_views(root: Path, samples: list[Sample], settings: BackboneSettings) -> np.ndarray:
    """Each image's number of network inputs, from its header alone (so bad sizes fail before any forward pass)."""
    if not settings.multi_view or settings.geometry.name == "whole":
        return np.ones(len(samples), dtype=np.int64)
    counts = np.zeros(len(samples), dtype=np.int64)
    for i, s in enumerate(samples):
        with readable(root / s.path), Image.open(root / s.path) as image:
            check_pixels(image, root / s.path, "resize it")
            counts[i] = len(checked_views(settings, image.size, root / s.path))
    return counts


def _local(features: PatchFeatures, extract: ExtractSettings, device: torch.device):
    def batches(root: Path, samples: list[Sample]) -> Iterator:
        with torch.inference_mode():
            yield from stream.host_batches([root / s.path for s in samples], features, device, extract)

    return batches


def _on_ray(
    settings: BackboneSettings, aggregation: AggregationSettings, extract: ExtractSettings, engine: EngineSettings
):
    from patchcore.engines.extract_worker import ExtractWorker
    from patchcore.engines.ray_pool import ShardPool

    pool = ShardPool(ExtractWorker, (settings, aggregation, extract, torch.get_num_threads()), engine)
    shard = engine.shard_batches * extract.batch_size  # whole batches: the same batches as the local engine

    def batches(root: Path, samples: list[Sample]) -> Iterator:
        # the images travel as bytes: the workers need no shared file system
        shards = (
            (
                [(root / s.path).read_bytes() for s in samples[i : i + shard]],
                [str(root / s.path) for s in samples[i : i + shard]],
            )
            for i in range(0, len(samples), shard)
        )
        return pool.map(ExtractWorker.features_of, shards)

    return batches, pool.first(ExtractWorker.device_name), pool


def run(
    root: Path,
    out_dir: Path,
    settings: BackboneSettings,
    loaded: LoadedBackbone,
    extract: ExtractSettings,
    aggregation: AggregationSettings,
    meta: dict,
    engine: EngineSettings | None = None,
) -> dict:
    """Extract both splits; return the image count and the seconds it took (for throughput)."""
    fraction = settings.train_fraction if settings.train_fraction is not None else extract.train_fraction
    # List and check both splits before any forward pass, so bad data fails before work starts. A validation split
    # (good images only) follows the test images in test.h5: evaluate scores it like them and sets thresholds on it.
    validation = list_split(root, VALIDATION)
    splits = {"train": subset(list_split(root, "train"), fraction), "test": list_split(root, "test") + validation}
    views = {split: count_views(root, samples, settings) for split, samples in splits.items()}
    features = PatchFeatures(LayerTap(loaded.model, settings.layers), settings, aggregation, extract.precision)
    grid = (*geometry(settings).grid, settings.target_dim)
    engine = engine or EngineSettings()
    identity = {
        "weights": loaded.weights,
        "train_fraction": fraction,
        "channels_last": extract.channels_last,
    }
    described = _described(settings, loaded, extract, features, grid, meta, len(validation))
    with contextlib.ExitStack() as stack:
        # both splits reserved before any forward pass, put in place together after the last
        stack.enter_context(output_set([Path(out_dir) / f"{split}.h5" for split in splits]))
        if engine.engine == "local":
            device = devices.resolve(extract.device, "extract.device")
            bb.place(loaded.model, device, extract.channels_last)
            batches, used = _local(features, extract, device), devices.describe(device)
        else:
            batches, used, pool = _on_ray(settings, aggregation, extract, engine)
            stack.enter_context(pool)  # the actors' slots are freed however the stage ends
        started = time.perf_counter()
        for split, samples in splits.items():
            attrs = {**meta, "split": split, **identity, "extract_device": used, **described}
            write_split(Path(out_dir) / f"{split}.h5", samples, grid, batches(root, samples), attrs, views[split])
    return {"images": sum(len(s) for s in splits.values()), "seconds": time.perf_counter() - started}


def _described(
    settings: BackboneSettings,
    loaded: LoadedBackbone,
    extract: ExtractSettings,
    features: PatchFeatures,
    grid: tuple,
    meta: dict,
    validation: int,
) -> dict:
    """What a features file's attributes say of how its features were computed (its fingerprint among them)."""
    return {
        "precision": extract.precision,
        "aggregation": features.attribute(),
        # the coreset then builds no held-out banks: the thresholds come from these images
        **({"validation_images": validation} if validation else {}),
        "fingerprint": fingerprint_attr(
            fingerprint(
                settings,
                loaded.weights,
                features.describe(),
                grid[:2],
                extract.precision,
                meta["dataset"],
                meta["category"],
            )
        ),
    }
