"""Scoring the rows of a features file against a bank, shard by shard: per-image scores and per-input maps."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from patchcore.config import BackboneSettings, EvaluateSettings
from patchcore.datasets.images import views_of
from patchcore.engines.score_worker import ScoreWorker
from patchcore.errors import UsageError
from patchcore.runtime.patchcore_onnx import stitch
from patchcore.store import h5io

SHARD_IMAGES = 16
FEATURES = ("patches", "labels", "paths", "masks", "defects", "sizes")


def score_rows(f: h5py.File, images: np.ndarray, scorer, settings: EvaluateSettings, size: int, desc: str, fix: str):
    """Scores (per image) and maps (per network input) of the given sorted images of an HDF5 features file, a
    query batch (one shard of whole images) at a time; a shard with a NaN or infinite feature is refused (``fix``
    says how to rebuild the file)."""
    h, w = (int(v) for v in f.attrs["grid"])
    per_view = h * w
    try:
        starts = h5io.view_starts(f)
    except ValueError as exc:
        raise UsageError(f"{f.filename}: {exc}; {fix}") from None
    counts = np.diff(starts)[images]
    per_image = per_view * int(counts.max()) if len(images) else per_view
    # at most SHARD_IMAGES images a shard, so that the bar moves every few seconds even against a
    # full bank; faiss blocks queries by 4,096 anyway, so larger shards search no faster
    step = max(1, min(SHARD_IMAGES, settings.query_batch // per_image))
    if scorer.size > 1:
        # enough shards for every worker; a shard's size cannot change a score (see core.scoring)
        step = max(1, min(step, -(-len(images) // (4 * scorer.size))))
    scores = np.zeros(len(images), dtype=np.float64)
    maps = np.zeros((int(counts.sum()), size, size), dtype=np.float32)
    firsts = np.concatenate([[0], np.cumsum(counts)])
    multi = "views" in f
    starts_of = (lambda i: firsts[i : i + step + 1] - firsts[i]) if multi else (lambda i: None)
    shards = (
        (
            h5io.check_rows(
                h5io.read_images(f["patches"], images[i : i + step], per_view, starts),
                Path(f.filename),
                "patches",
                fix,
            ),
            (h, w),
            settings.reweight_neighbours,
            size,
            settings.blur_sigma,
            starts_of(i),
        )
        for i in range(0, len(images), step)
    )
    results = scorer.map(ScoreWorker.score, shards)
    with tqdm(total=len(images), desc=desc, unit="image", disable=len(images) == 0) as bar:
        for first, (s, m) in zip(range(0, len(images), step), results):
            scores[first : first + len(s)], maps[firsts[first] : firsts[first] + len(m)] = s, m
            bar.update(len(s))
    return scores, maps, firsts


def boxes_of(backbone: BackboneSettings, sizes: np.ndarray) -> np.ndarray:
    """(V, 4) the boxes of every network input of images of (height, width) ``sizes``, in order."""
    boxes = [v.box() for h, w in sizes for v in views_of(backbone, int(w), int(h))]
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def peaks(maps: np.ndarray, firsts: np.ndarray, sizes: np.ndarray, backbone: BackboneSettings) -> np.ndarray:
    """The highest value of each image's anomaly map: what the pixel threshold is a quantile of. One input per image:
    its map at the input's size (as ever); several: the stitched map at the image's own size, the one decided on."""
    if len(firsts) - 1 == len(maps):
        return maps.reshape(len(maps), -1).max(axis=1) if len(maps) else np.zeros(0)
    boxes = boxes_of(backbone, sizes)
    return np.array(
        [stitch(maps[a:z], boxes[a:z], (int(hw[0]), int(hw[1]))).max() for a, z, hw in zip(firsts, firsts[1:], sizes)]
    )
