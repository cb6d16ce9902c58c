"""Scoring a model folder's held-out and test images, shard by shard on the chosen engine.

The evaluate stage's heavy part: every image's score and anomaly map against the deployed
bank, and each held-out good training image's against a bank that never saw it (its fold's
coreset of the other folds, or the deployed bank for a single held-out split). A data set with
its own validation split (good images) has them scored instead, after the test images.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import h5py
import numpy as np

from patchcore.config import BackboneSettings, EvaluateSettings
from patchcore.core.scoring import reweighting
from patchcore.datasets.layout import VALIDATION
from patchcore.engines import ray_pool as engines
from patchcore.engines.score_worker import ScoreWorker
from patchcore.engines.settings import EngineSettings
from patchcore.pipeline import held_out
from patchcore.pipeline.score_rows import FEATURES, boxes_of, score_rows
from patchcore.runtime.patchcore_onnx import stitch
from patchcore.store import h5io
from patchcore.store.model_folder import ModelFolder

BANK = ("bank", "holdout_images", "image_folds", "fold_rows", "fold_starts")


@dataclass(frozen=True, kw_only=True)
class Scored:
    """The test set as scored: what the metrics, pictures and model card are computed from.

    ``n`` test images and ``h`` held-out good training images; maps are at the network's input size S, one per
    network input: V = n with one input per image, more with tiles (``starts``, ``boxes``; ``full_map`` stitches).
    """

    held_scores: np.ndarray  # (h,) image scores of good images the bank never saw: held-out training or validation
    held_map_max: np.ndarray  # (h,) the highest value of each of their anomaly maps
    calibration: dict  # how those images were held out (method "validation": the data set's validation split)
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
    validation_pixels: dict | None = None  # mean and std of every validation map pixel at its image's size

    def views(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Test image ``i``'s (k, S, S) maps and (k, 4) boxes."""
        a, z = self.starts[i], self.starts[i + 1]
        return self.maps[a:z], self.boxes[a:z]

    def full_map(self, i: int) -> np.ndarray:
        """Test image ``i``'s anomaly map at its own (height, width), its inputs' maps stitched (the runtime's)."""
        return stitch(*self.views(i), (int(self.sizes[i][0]), int(self.sizes[i][1])))


def score(
    folder: ModelFolder, backbone: BackboneSettings, settings: EvaluateSettings, engine: EngineSettings | None = None
) -> Scored:
    """The held-out and test images scored against the folder's bank, each through ``backbone``'s network inputs."""
    engine = engine or EngineSettings()
    if settings.faiss_threads:
        faiss.omp_set_num_threads(settings.faiss_threads)
    b, rule, settings = _bank(folder, settings)
    with h5io.reading(folder.test, folder.rebuild(folder.test), datasets=FEATURES) as f:
        paths = h5io.read_strings(f["paths"])
    n = sum(not p.startswith(f"{VALIDATION}/") for p in paths)  # the validation images follow the test images
    # the CPU searches with faiss, a GPU with torch (exact on both; see core.scoring)
    with engines.pool(
        ScoreWorker, (b["bank"], settings.approximate_above, settings.device, "evaluate.device"), engine
    ) as scorer:
        search, bank_size, device = scorer.first(ScoreWorker.search)
        if n == len(paths):
            held_scores, held_peaks, calibration = held_out.held_out(folder, b, settings, backbone, engine, scorer)
        with h5io.reading(folder.test, folder.rebuild(folder.test), datasets=FEATURES, attrs=("grid",)) as f:
            scores, maps, firsts = score_rows(
                f, np.arange(len(paths)), scorer, settings, backbone.crop, "score test", folder.rebuild(folder.test)
            )
            sizes = f["sizes"][()]
            pixels = None
            if n < len(paths):
                held_scores, held_peaks, pixels = held_out.validation(scores[n:], maps, firsts[n:], sizes[n:], backbone)
                calibration = held_out.validation_calibration(b, len(paths) - n)
            if search["index"].startswith("approximate") and n:
                search["recall_at_1"] = _recall(f, scorer)
            return Scored(
                held_scores=held_scores,
                held_map_max=held_peaks,
                calibration=calibration,
                scores=scores[:n],
                maps=maps[: firsts[n]],
                starts=firsts[: n + 1],
                boxes=boxes_of(backbone, sizes[:n]),
                labels=f["labels"][:n],
                paths=paths[:n],
                masks=h5io.read_strings(f["masks"])[:n],
                defects=h5io.read_strings(f["defects"])[:n],
                sizes=sizes[:n],
                attrs=dict(f.attrs),
                bank_attrs=b["attrs"],
                search=search,
                bank_size=bank_size,
                device=device,
                reweighting=rule,
                validation_pixels=pixels,
            )


def _bank(folder: ModelFolder, settings: EvaluateSettings) -> tuple[dict, dict, EvaluateSettings]:
    """The bank file's arrays, the reweighting rule as run, and the settings with it."""
    with h5io.reading(folder.bank, folder.rebuild(folder.bank), datasets=BANK) as f:
        b = {k: f[k][()] for k in BANK} | {"attrs": dict(f.attrs)}
    h5io.check_rows(b["bank"], folder.bank, "bank", folder.rebuild(folder.bank))
    # the held-out images' fold banks and the deployed bank follow one rule, so their scores compare
    smallest = min([len(b["bank"]), *np.diff(b["fold_starts"]).tolist()])
    used, note = reweighting(settings.reweight_neighbours, smallest)
    rule = {"on": used > 1, "neighbours": settings.reweight_neighbours, **({"note": note} if note else {})}
    return b, rule, settings.model_copy(update={"reweight_neighbours": used})


def _recall(f: h5py.File, scorer) -> float:
    """Recall of the approximate index on (up to) 20,000 test patches spread over the set."""
    rows = np.unique(np.linspace(0, f["patches"].shape[0] - 1, min(20000, f["patches"].shape[0])).astype(np.int64))
    return round(next(scorer.map(ScoreWorker.recall_at_1, [(f["patches"][rows],)])), 6)
