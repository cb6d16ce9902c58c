"""The good images that thresholds are set on, scored by a bank that never saw them: held-out training images (folds
or a split) or the data set's own validation split."""

from __future__ import annotations

import numpy as np

from patchcore.config import BackboneSettings, EvaluateSettings
from patchcore.engines import ray_pool as engines
from patchcore.engines.score_worker import ScoreWorker
from patchcore.engines.settings import EngineSettings
from patchcore.pipeline import score_rows as rows
from patchcore.pipeline.score_rows import FEATURES, boxes_of, score_rows
from patchcore.runtime.patchcore_onnx import stitch
from patchcore.store import h5io
from patchcore.store.model_folder import ModelFolder


def held_out(
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
            scores, maps, firsts = score_rows(
                f, held, scorer, settings, size, "score held-out", folder.rebuild(folder.train)
            )
            method = "split" if len(held) else "none"
            peaks = rows.peaks(maps, firsts, sizes[held], backbone)
            return scores, peaks, {**calibration, "method": method, "holdout_images": int(len(held))}
        scores, peaks = np.zeros(len(folds)), np.zeros(len(folds))
        for k in range(n_folds):
            images = np.flatnonzero(folds == k)
            fold_bank = h5io.take_rows(f["patches"], b["fold_rows"][b["fold_starts"][k] : b["fold_starts"][k + 1]])
            with engines.pool(
                ScoreWorker, (fold_bank, settings.approximate_above, settings.device, "evaluate.device"), engine
            ) as fold_scorer:
                s, m, firsts = score_rows(
                    f,
                    images,
                    fold_scorer,
                    settings,
                    size,
                    f"score fold {k + 1}/{n_folds}",
                    folder.rebuild(folder.train),
                )
            scores[images], peaks[images] = s, rows.peaks(m, firsts, sizes[images], backbone)
    return scores, peaks, {**calibration, "method": f"{n_folds}-fold", "holdout_images": int(len(folds))}


def validation(
    scores: np.ndarray, maps: np.ndarray, firsts: np.ndarray, sizes: np.ndarray, backbone: BackboneSettings
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The validation images' scores, map maxima and the mean and std of every pixel of their maps at their own size
    (MVTec AD 2's suggested threshold is mean + 3 std of these). ``firsts``: their first rows of ``maps``."""
    boxes = boxes_of(backbone, sizes)
    total = square = count = 0.0
    for hw, a, z in zip(sizes, firsts, firsts[1:]):
        full = stitch(maps[a:z], boxes[a - firsts[0] : z - firsts[0]], (int(hw[0]), int(hw[1]))).astype(np.float64)
        total, square, count = total + full.sum(), square + np.square(full).sum(), count + full.size
    peaks = rows.peaks(maps[firsts[0] :], firsts - firsts[0], sizes, backbone)
    mean = total / count
    return (
        scores,
        peaks,
        {
            "mean": round(mean, 6),
            "std": round(float(np.sqrt(max(square / count - mean**2, 0.0))), 6),
            "pixels": int(count),
        },
    )


def validation_calibration(bank: dict, images: int) -> dict:
    """How the thresholds' images were held out: the validation split (the bank's own held-out share, if any, is
    still left out of the bank)."""
    return {
        "train_images": int(len(bank["image_folds"])),
        "method": "validation",
        "holdout_images": images,
        "bank_excludes": int(len(bank["holdout_images"])),
    }
