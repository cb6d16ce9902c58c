"""Stage `evaluate`: score held-out and test images against the bank; metrics, threshold, pictures."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

import faiss
import h5py
import numpy as np
from sklearn.metrics import precision_recall_fscore_support, roc_curve
from tqdm import tqdm

from . import figures, h5io
from .atomic import atomic_path, write_json
from .images import load_mask, load_rgb, network_view
from .localization import aupro, count_pixels, region_shares, roc_from_counts
from .metrics import bootstrap, image_auroc, pixel_auroc
from .params import BackboneSettings, EvaluateSettings
from .scoring import NearestBank, score_images


def _score_rows(f: h5py.File, images: np.ndarray, nearest: NearestBank, settings: EvaluateSettings, size: int, desc: str):
    """Scores and maps of the given images of an HDF5 features file, a query batch at a time."""
    h, w = (int(v) for v in f.attrs["grid"])
    per_image = h * w
    step = max(1, settings.query_batch // per_image)
    scores = np.zeros(len(images), dtype=np.float64)
    maps = np.zeros((len(images), size, size), dtype=np.float32)
    for first in tqdm(range(0, len(images), step), desc=desc, unit="batch", disable=len(images) == 0):
        group = images[first : first + step]
        block = h5io.read_images(f["patches"], group, per_image)
        scores[first : first + len(group)], maps[first : first + len(group)] = score_images(
            nearest, block, (h, w), settings.reweight_neighbours, size, settings.blur_sigma
        )
    return scores, maps


def run(
    train_h5: Path, test_h5: Path, bank_h5: Path, data_root: Path, backbone: BackboneSettings, settings: EvaluateSettings, plots: Path, model_json: Path
) -> dict:
    size = backbone.crop
    if settings.faiss_threads:
        faiss.omp_set_num_threads(settings.faiss_threads)
    with h5py.File(bank_h5, "r") as b:
        nearest = NearestBank(b["bank"][()], settings.approximate_above)
        held = b["holdout_images"][()]
        bank_attrs = dict(b.attrs)
    with h5py.File(train_h5, "r") as f:
        held_scores, _ = _score_rows(f, held, nearest, settings, size, "score held-out")
    with h5py.File(test_h5, "r") as f:
        n = f["labels"].shape[0]
        scores, maps = _score_rows(f, np.arange(n), nearest, settings, size, "score test")
        search = nearest.describe()
        if nearest.approximate:
            # recall of the approximate index on (up to) 20,000 test patches spread over the set
            rows = np.unique(np.linspace(0, f["patches"].shape[0] - 1, min(20000, f["patches"].shape[0])).astype(np.int64))
            search["recall_at_1"] = round(nearest.recall_at_1(f["patches"][rows]), 6)
        labels = f["labels"][()]
        mask_paths = h5io.read_strings(f["masks"])
        paths = h5io.read_strings(f["paths"])
        defects = h5io.read_strings(f["defects"])
        attrs = dict(f.attrs)

    # Defective images without a mask cannot be scored per pixel; good images are all-negative.
    pixel_rows = np.array([i for i in range(n) if labels[i] == 0 or mask_paths[i]], dtype=np.int64)
    masks = np.stack([load_mask(data_root / mask_paths[i] if mask_paths[i] else None, backbone) for i in pixel_rows])
    skipped = sorted({defects[i] for i in range(n) if labels[i] == 1 and not mask_paths[i]})
    pixel_maps = maps[pixel_rows]
    counts = count_pixels(masks, pixel_maps) if masks.any() else None
    pix = pixel_auroc(masks, pixel_maps) if counts is not None else None
    pro = aupro(counts.neg.sum(0), region_shares(counts.regions), settings.max_fpr) if counts is not None else None
    intervals = bootstrap(labels, scores, pixel_rows, counts, settings.bootstrap, settings.seed, settings.max_fpr) if settings.bootstrap else {}

    threshold = float(np.quantile(held_scores, settings.threshold_quantile)) if len(held) else None
    decision = None
    if threshold is not None:
        predicted = scores >= threshold
        p, r, f1, _ = precision_recall_fscore_support(labels, predicted, average="binary", zero_division=0)
        decision = {"threshold": round(threshold, 6), "precision": round(float(p), 6), "recall": round(float(r), 6), "f1": round(float(f1), 6),
                    "holdout_images": int(len(held)), "quantile": settings.threshold_quantile}

    record = {
        "dataset": str(attrs["dataset"]),
        "category": str(attrs["category"]),
        "backbone": backbone.name,
        "weights": str(attrs["weights"]),
        "image_auroc": round(image_auroc(labels, scores), 6),
        "pixel_auroc": None if pix is None else round(pix, 6),
        "aupro": None if pro is None else round(pro, 6),
        "ci95": intervals,
        "bootstrap_resamples": settings.bootstrap,
        "aupro_max_fpr": settings.max_fpr,
        "threshold_metrics": decision,
        "reweighting": {"on": settings.reweight_neighbours > 1, "neighbours": settings.reweight_neighbours},
        "search": search,
        "pixel_skipped_defect_types": skipped,
        "test_images": int(n),
        "defective_images": int(labels.sum()),
        "masks_used": int(sum(1 for m in mask_paths if m)),
        "train_fraction": float(attrs["train_fraction"]),
        "bank_size": int(nearest.bank.shape[0]),
        "coreset_ratio": float(bank_attrs["coreset_ratio"]),
        "train_patches": int(bank_attrs["train_patches"]),
        "blur_sigma": settings.blur_sigma,
    }
    title = f"{record['dataset']}/{record['category']} x {backbone.name} ({record['weights']})"
    mask_of = {int(i): m for i, m in zip(pixel_rows, masks)}  # good images all-false; unmasked defects absent
    _write_plots(plots, title, labels, scores, maps, paths, mask_of, data_root, backbone, record, counts, threshold)
    write_json(model_json, {
        "backbone": dataclasses.asdict(backbone),
        "weights": record["weights"],
        "dataset": record["dataset"],
        "category": record["category"],
        "threshold": threshold,
        "reweight_neighbours": settings.reweight_neighbours,
        "blur_sigma": settings.blur_sigma,
        "heat_scale": float(max(held_scores.max() if len(held) else scores.max(), 1e-12)),
        "approximate_above": settings.approximate_above,
        "channels_last": bool(attrs.get("channels_last", False)),  # predict must compute exactly as extract did
    })
    return record


def _write_plots(plots, title, labels, scores, maps, paths, mask_of, data_root, backbone, record, counts, threshold) -> None:
    plots.mkdir(parents=True, exist_ok=True)
    fpr, tpr, _ = roc_curve(labels, scores)
    write_json(plots / "roc.json", {"roc": [{"fpr": round(float(a), 6), "tpr": round(float(b), 6)} for a, b in zip(fpr, tpr)]})
    pixel_roc = roc_from_counts(counts.neg.sum(0), counts.pos.sum(0)) if counts is not None else None
    figures.roc_figure(plots / "roc.png", title, (fpr, tpr), record["image_auroc"], pixel_roc, record["pixel_auroc"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "label", "score", "anomalous"])
    for path, label, score in zip(paths, labels, scores):
        writer.writerow([path, int(label), f"{score:.6f}", "" if threshold is None else int(score >= threshold)])
    with atomic_path(plots / "scores.csv", ".csv") as tmp:
        tmp.write_text(buffer.getvalue())
    order = np.argsort(-scores, kind="stable")
    chosen = list(order[:3]) + list(order[-3:][::-1]) if len(order) > 6 else list(order)
    vmax = float(np.quantile(maps, 0.999))
    view = network_view(backbone)
    panels = []
    for i in chosen:
        verdict = "" if threshold is None else (" anomalous" if scores[i] >= threshold else " good")
        panels.append({"image": view(load_rgb(data_root / paths[i])), "map": maps[i], "mask": mask_of.get(int(i)),
                       "caption": f"{paths[i]}\nscore {scores[i]:.3f}{verdict}"})
    figures.maps_figure(plots / "maps.png", f"most (top) and least (bottom) anomalous test images\n{title}", panels, vmax)
