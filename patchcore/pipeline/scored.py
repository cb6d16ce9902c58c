"""Scoring a model folder's held-out and test images, shard by shard on the chosen engine.

The evaluate stage's heavy part: every image's score and anomaly map against the deployed
bank, and each held-out good training image's against a bank that never saw it (its fold's
coreset of the other folds, or the deployed bank for a single held-out split).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import h5py
import numpy as np
from tqdm import tqdm

from patchcore.config import BackboneSettings, EvaluateSettings
from patchcore.core.scoring import reweighting
from patchcore.datasets.images import views_of
from patchcore.engines import ray_pool as engines
from patchcore.engines.score_worker import ScoreWorker
from patchcore.engines.settings import EngineSettings
from patchcore.errors import UsageError
from patchcore.runtime.patchcore_onnx import stitch
from patchcore.store import h5io
from patchcore.store.model_folder import ModelFolder

SHARD_IMAGES = 16


def _score_rows(f: h5py.File, images: np.ndarray, scorer, settings: EvaluateSettings, size: int, desc: str, fix: str):
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


@dataclass(frozen=True, kw_only=True)
class Scored:
    """The test set as scored: what the metrics, pictures and model card are computed from.

    ``n`` test images and ``h`` held-out good training images; maps are at the network's input size S, one per
    network input: V = n with one input per image, more with tiles (``starts``, ``boxes``; ``full_map`` stitches).
    """

    held_scores: np.ndarray  # (h,) image scores of good training images scored out of the bank (folds or split)
    held_map_max: np.ndarray  # (h,) the highest value of each of their anomaly maps
    calibration: dict  # how those images were held out
    scores: np.ndarray  # (n,) image scores
    maps: np.ndarray  # (V, S, S) anomaly maps of the test images' network inputs
    starts: np.ndarray  # (n + 1,) each test image's first input (row of maps), their count last
    boxes: np.ndarray  # (V, 4) each input's box: the original image (x0, y0, x1, y1) in the input's pixels
    labels: np.ndarray  # (n,) int8, 1 for a defective image
    paths: list[str]  # n test image paths, relative to the category's folder
    masks: list[str]  # n ground-truth mask paths ("" where none)
    defects: list[str]  # n defect type names ("good" for good images)
    sizes: np.ndarray  # (n, 2) original height, width of each test image
    attrs: dict
    bank_attrs: dict
    search: dict
    bank_size: int
    device: str
    reweighting: dict  # Eq. 7 as run: on, b asked for, and a note when a bank too small switched it off

    def views(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Test image ``i``'s (k, S, S) maps and (k, 4) boxes."""
        a, z = self.starts[i], self.starts[i + 1]
        return self.maps[a:z], self.boxes[a:z]

    def full_map(self, i: int) -> np.ndarray:
        """Test image ``i``'s anomaly map at its own (height, width), its inputs' maps stitched (the runtime's)."""
        return stitch(*self.views(i), (int(self.sizes[i][0]), int(self.sizes[i][1])))


FEATURES = ("patches", "labels", "paths", "masks", "defects", "sizes")
BANK = ("bank", "holdout_images", "image_folds", "fold_rows", "fold_starts")


def boxes_of(backbone: BackboneSettings, sizes: np.ndarray) -> np.ndarray:
    """(V, 4) the boxes of every network input of images of (height, width) ``sizes``, in order."""
    boxes = [v.box() for h, w in sizes for v in views_of(backbone, int(w), int(h))]
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def _peaks(maps: np.ndarray, firsts: np.ndarray, sizes: np.ndarray, backbone: BackboneSettings) -> np.ndarray:
    """The highest value of each image's anomaly map: what the pixel threshold is a quantile of. One input per image:
    its map at the input's size (as ever); several: the stitched map at the image's own size, the one decided on."""
    if len(firsts) - 1 == len(maps):
        return maps.reshape(len(maps), -1).max(axis=1) if len(maps) else np.zeros(0)
    boxes = boxes_of(backbone, sizes)
    return np.array(
        [stitch(maps[a:z], boxes[a:z], (int(hw[0]), int(hw[1]))).max() for a, z, hw in zip(firsts, firsts[1:], sizes)]
    )


def _held_out(
    folder: ModelFolder, b: dict, settings: EvaluateSettings, backbone: BackboneSettings, engine: EngineSettings, scorer
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Scores and map maxima of the good training images that the scoring bank never saw.

    k-fold: each fold's images against the coreset of the other folds (its rows of train.h5);
    split: the held-out images against the deployed bank (``scorer``).
    """
    folds, held = b["image_folds"], b["holdout_images"]
    n_folds = int(folds.max()) + 1 if len(folds) else 0
    calibration = {
        "train_images": int(len(folds)),
        "holdout_fraction": float(b["attrs"]["holdout_fraction"]),
        "folds": n_folds,
    }
    with h5io.reading(folder.train, folder.rebuild(folder.train), datasets=FEATURES, attrs=("grid",)) as f:
        size, sizes = backbone.crop, f["sizes"][()]
        if not n_folds:
            scores, maps, firsts = _score_rows(
                f, held, scorer, settings, size, "score held-out", folder.rebuild(folder.train)
            )
            method = "split" if len(held) else "none"
            peaks = _peaks(maps, firsts, sizes[held], backbone)
            return scores, peaks, {**calibration, "method": method, "holdout_images": int(len(held))}
        scores, peaks = np.zeros(len(folds)), np.zeros(len(folds))
        for k in range(n_folds):
            images = np.flatnonzero(folds == k)
            fold_bank = h5io.take_rows(f["patches"], b["fold_rows"][b["fold_starts"][k] : b["fold_starts"][k + 1]])
            with engines.pool(
                ScoreWorker, (fold_bank, settings.approximate_above, settings.device, "evaluate.device"), engine
            ) as fold_scorer:
                s, m, firsts = _score_rows(
                    f,
                    images,
                    fold_scorer,
                    settings,
                    size,
                    f"score fold {k + 1}/{n_folds}",
                    folder.rebuild(folder.train),
                )
            scores[images], peaks[images] = s, _peaks(m, firsts, sizes[images], backbone)
    return scores, peaks, {**calibration, "method": f"{n_folds}-fold", "holdout_images": int(len(folds))}


def score(
    folder: ModelFolder, backbone: BackboneSettings, settings: EvaluateSettings, engine: EngineSettings | None = None
) -> Scored:
    """The held-out and test images scored against the folder's bank, each through ``backbone``'s network inputs."""
    engine = engine or EngineSettings()
    if settings.faiss_threads:
        faiss.omp_set_num_threads(settings.faiss_threads)
    with h5io.reading(folder.bank, folder.rebuild(folder.bank), datasets=BANK) as f:
        b = {k: f[k][()] for k in BANK} | {"attrs": dict(f.attrs)}
    h5io.check_rows(b["bank"], folder.bank, "bank", folder.rebuild(folder.bank))
    # the held-out images' fold banks and the deployed bank follow one rule, so their scores compare
    smallest = min([len(b["bank"]), *np.diff(b["fold_starts"]).tolist()])
    used, note = reweighting(settings.reweight_neighbours, smallest)
    rule = {"on": used > 1, "neighbours": settings.reweight_neighbours, **({"note": note} if note else {})}
    settings = settings.model_copy(update={"reweight_neighbours": used})
    # the CPU searches with faiss, a GPU with torch (exact on both; see core.scoring)
    with engines.pool(
        ScoreWorker, (b["bank"], settings.approximate_above, settings.device, "evaluate.device"), engine
    ) as scorer:
        search, bank_size, device = scorer.first(ScoreWorker.search)
        held_scores, held_peaks, calibration = _held_out(folder, b, settings, backbone, engine, scorer)
        with h5io.reading(folder.test, folder.rebuild(folder.test), datasets=FEATURES, attrs=("grid",)) as f:
            n = f["labels"].shape[0]
            scores, maps, firsts = _score_rows(
                f, np.arange(n), scorer, settings, backbone.crop, "score test", folder.rebuild(folder.test)
            )
            sizes = f["sizes"][()]
            if search["index"].startswith("approximate") and n:
                # recall of the approximate index on (up to) 20,000 test patches spread over the set
                rows = np.unique(
                    np.linspace(0, f["patches"].shape[0] - 1, min(20000, f["patches"].shape[0])).astype(np.int64)
                )
                search["recall_at_1"] = round(next(scorer.map(ScoreWorker.recall_at_1, [(f["patches"][rows],)])), 6)
            return Scored(
                held_scores=held_scores,
                held_map_max=held_peaks,
                calibration=calibration,
                scores=scores,
                maps=maps,
                starts=firsts,
                boxes=boxes_of(backbone, sizes),
                labels=f["labels"][()],
                paths=h5io.read_strings(f["paths"]),
                masks=h5io.read_strings(f["masks"]),
                defects=h5io.read_strings(f["defects"]),
                sizes=sizes,
                attrs=dict(f.attrs),
                bank_attrs=b["attrs"],
                search=search,
                bank_size=bank_size,
                device=device,
                reweighting=rule,
            )
