"""Stage `evaluate`: score held-out and test images against the bank; metrics, threshold, pictures."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import h5py
import numpy as np
from sklearn.metrics import precision_recall_fscore_support, roc_curve
from tqdm import tqdm

from .config import AggregationSettings, BackboneSettings, EvaluateSettings, Params
from .core.localization import (
    PixelCounts,
    aupro,
    count_pixels,
    region_shares,
    roc_from_counts,
)
from .core.metrics import bootstrap, image_auroc, pixel_auroc
from .datasets.images import load_mask, load_rgb, network_view
from .engines import ray_pool as engines
from .engines import settings as engine_settings
from .engines.score_worker import ScoreWorker
from .engines.settings import EngineSettings
from .store import figures, h5io, paths
from .store.atomic import atomic_path, write_json
from .store.model_folder import ModelCard, ModelFolder, compare, fingerprint


def _score_rows(f: h5py.File, images: np.ndarray, scorer, settings: EvaluateSettings, size: int, desc: str):
    """Scores and maps of the given images of an HDF5 features file, a query batch (one shard) at a time."""
    h, w = (int(v) for v in f.attrs["grid"])
    per_image = h * w
    step = max(1, settings.query_batch // per_image)
    if scorer.size > 1:
        # enough shards for every worker; a shard's size cannot change a score (see core.scoring)
        step = max(1, min(step, -(-len(images) // (4 * scorer.size))))
    scores = np.zeros(len(images), dtype=np.float64)
    maps = np.zeros((len(images), size, size), dtype=np.float32)
    starts = range(0, len(images), step)
    shards = (
        (h5io.read_images(f["patches"], images[i : i + step], per_image), (h, w), settings.reweight_neighbours, size, settings.blur_sigma)
        for i in starts
    )
    results = scorer.map("score", shards)
    for first, (s, m) in tqdm(zip(starts, results), total=len(starts), desc=desc, unit="batch", disable=len(images) == 0):
        scores[first : first + len(s)], maps[first : first + len(s)] = s, m
    return scores, maps


@dataclass
class Scored:
    """The test set as scored: what the metrics, pictures and model card are computed from."""

    held_scores: np.ndarray
    scores: np.ndarray
    maps: np.ndarray
    labels: np.ndarray
    paths: list[str]
    masks: list[str]
    defects: list[str]
    attrs: dict
    bank_attrs: dict
    search: dict
    bank_size: int
    device: str


FEATURES = ("patches", "labels", "paths", "masks", "defects")


def check_features(folder: ModelFolder, expected: dict) -> None:
    """train.h5, test.h5 and bank.h5 must come from the same features, and those from params.yaml's settings now
    (``expected``: params.yaml's fingerprint; the weights' identity and the grid only the files know)."""
    prints = {path.name: folder.features_fingerprint(path) for path in (folder.bank, folder.test, folder.train)}
    compare(prints["bank.h5"], str(folder.bank), prints["test.h5"], str(folder.test))
    compare(prints["bank.h5"], str(folder.bank), prints["train.h5"], str(folder.train))
    known = {k: prints["bank.h5"].get(k) for k in ("weights", "grid")}
    compare({**expected, **known}, "params.yaml", prints["bank.h5"], str(folder.bank))


def score(folder: ModelFolder, size: int, settings: EvaluateSettings, engine: EngineSettings | None = None) -> Scored:
    engine = engine or EngineSettings()
    if settings.faiss_threads:
        faiss.omp_set_num_threads(settings.faiss_threads)
    with h5io.reading(folder.bank, folder.rebuild(folder.bank), datasets=("bank", "holdout_images")) as b:
        bank, held, bank_attrs = b["bank"][()], b["holdout_images"][()], dict(b.attrs)
    # the CPU searches with faiss, a GPU with torch (exact on both; see core.scoring)
    with engines.pool(ScoreWorker, (bank, settings.approximate_above, settings.device, "evaluate.device"), engine) as scorer:
        search, bank_size, device = scorer.first("search")
        with h5io.reading(folder.train, folder.rebuild(folder.train), datasets=FEATURES, attrs=("grid",)) as f:
            held_scores, _ = _score_rows(f, held, scorer, settings, size, "score held-out")
        with h5io.reading(folder.test, folder.rebuild(folder.test), datasets=FEATURES, attrs=("grid",)) as f:
            n = f["labels"].shape[0]
            scores, maps = _score_rows(f, np.arange(n), scorer, settings, size, "score test")
            if search["index"].startswith("approximate"):
                # recall of the approximate index on (up to) 20,000 test patches spread over the set
                rows = np.unique(np.linspace(0, f["patches"].shape[0] - 1, min(20000, f["patches"].shape[0])).astype(np.int64))
                search["recall_at_1"] = round(next(scorer.map("recall_at_1", [(f["patches"][rows],)])), 6)
            return Scored(
                held_scores,
                scores,
                maps,
                f["labels"][()],
                h5io.read_strings(f["paths"]),
                h5io.read_strings(f["masks"]),
                h5io.read_strings(f["defects"]),
                dict(f.attrs),
                bank_attrs,
                search,
                bank_size,
                device,
            )


def pixel_metrics(s: Scored, data_root: Path, backbone: BackboneSettings, settings: EvaluateSettings):
    """Pixel AUROC, AUPRO and bootstrap intervals; defective images without a mask are left out."""
    n = len(s.labels)
    pixel_rows = np.array([i for i in range(n) if s.labels[i] == 0 or s.masks[i]], dtype=np.int64)
    masks = np.stack([load_mask(data_root / s.masks[i] if s.masks[i] else None, backbone) for i in pixel_rows])
    pixel_maps = s.maps[pixel_rows]
    counts = count_pixels(masks, pixel_maps) if masks.any() else None
    pix = pixel_auroc(masks, pixel_maps) if counts is not None else None
    pro = aupro(counts.neg.sum(0), region_shares(counts.regions), settings.max_fpr) if counts is not None else None
    intervals = bootstrap(s.labels, s.scores, pixel_rows, counts, settings.bootstrap, settings.seed, settings.max_fpr) if settings.bootstrap else {}
    mask_of = {int(i): m for i, m in zip(pixel_rows, masks)}  # good images all-false; unmasked defects absent
    return pix, pro, intervals, counts, mask_of


def decision(s: Scored, quantile: float) -> tuple[float | None, dict | None]:
    """The threshold from the held-out good images, and precision/recall/F1 of the test set at it."""
    if not len(s.held_scores):
        return None, None
    threshold = float(np.quantile(s.held_scores, quantile))
    p, r, f1, _ = precision_recall_fscore_support(s.labels, s.scores >= threshold, average="binary", zero_division=0)
    return threshold, {
        "threshold": round(threshold, 6),
        "precision": round(float(p), 6),
        "recall": round(float(r), 6),
        "f1": round(float(f1), 6),
        "holdout_images": int(len(s.held_scores)),
        "quantile": quantile,
    }


def metrics_record(s: Scored, backbone: BackboneSettings, settings: EvaluateSettings, pixel: tuple, threshold_metrics: dict | None) -> dict:
    pix, pro, intervals = pixel[:3]
    return {
        "dataset": str(s.attrs["dataset"]),
        "category": str(s.attrs["category"]),
        "backbone": backbone.name,
        "weights": str(s.attrs["weights"]),
        "features": json.loads(str(s.attrs["aggregation"])),
        "precision": str(s.attrs["precision"]),
        "devices": {"extract": str(s.attrs["extract_device"]), "coreset": str(s.bank_attrs["coreset_device"]), "evaluate": s.device},
        "image_auroc": round(image_auroc(s.labels, s.scores), 6),
        "pixel_auroc": None if pix is None else round(pix, 6),
        "aupro": None if pro is None else round(pro, 6),
        "ci95": intervals,
        "bootstrap_resamples": settings.bootstrap,
        "aupro_max_fpr": settings.max_fpr,
        "threshold_metrics": threshold_metrics,
        "reweighting": {"on": settings.reweight_neighbours > 1, "neighbours": settings.reweight_neighbours},
        "search": s.search,
        "pixel_skipped_defect_types": sorted({s.defects[i] for i in range(len(s.labels)) if s.labels[i] == 1 and not s.masks[i]}),
        "test_images": int(len(s.labels)),
        "defective_images": int(s.labels.sum()),
        "masks_used": int(sum(1 for m in s.masks if m)),
        "train_fraction": float(s.attrs["train_fraction"]),
        "bank_size": s.bank_size,
        "coreset_ratio": float(s.bank_attrs["coreset_ratio"]),
        "train_patches": int(s.bank_attrs["train_patches"]),
        "blur_sigma": settings.blur_sigma,
    }


def model_card(s: Scored, record: dict, backbone: BackboneSettings, settings: EvaluateSettings, threshold: float | None) -> ModelCard:
    return ModelCard(
        backbone=backbone,
        aggregation=AggregationSettings(**{k: v for k, v in record["features"].items() if k != "layer_dim"}),
        weights=record["weights"],
        dataset=record["dataset"],
        category=record["category"],
        threshold=threshold,
        reweight_neighbours=settings.reweight_neighbours,
        blur_sigma=settings.blur_sigma,
        heat_scale=float(max(s.held_scores.max() if len(s.held_scores) else s.scores.max(), 1e-12)),
        approximate_above=settings.approximate_above,
        channels_last=bool(s.attrs.get("channels_last", False)),
        precision=str(s.attrs["precision"]),
        fingerprint=json.loads(str(s.bank_attrs["fingerprint"])),
    )


def write_plots(
    plots: Path, title: str, s: Scored, pixel: tuple, data_root: Path, backbone: BackboneSettings, record: dict, threshold: float | None
) -> None:
    counts: PixelCounts | None = pixel[3]
    mask_of: dict = pixel[4]
    plots.mkdir(parents=True, exist_ok=True)
    fpr, tpr, _ = roc_curve(s.labels, s.scores)
    write_json(plots / "roc.json", {"roc": [{"fpr": round(float(a), 6), "tpr": round(float(b), 6)} for a, b in zip(fpr, tpr)]})
    pixel_roc = roc_from_counts(counts.neg.sum(0), counts.pos.sum(0)) if counts is not None else None
    figures.roc_figure(plots / "roc.png", title, (fpr, tpr), record["image_auroc"], pixel_roc, record["pixel_auroc"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "label", "score", "anomalous"])
    for path, label, value in zip(s.paths, s.labels, s.scores):
        writer.writerow([path, int(label), f"{value:.6f}", "" if threshold is None else int(value >= threshold)])
    with atomic_path(plots / "scores.csv", ".csv") as tmp:
        tmp.write_text(buffer.getvalue())
    order = np.argsort(-s.scores, kind="stable")
    chosen = list(order[:3]) + list(order[-3:][::-1]) if len(order) > 6 else list(order)
    view = network_view(backbone)
    panels = []
    for i in chosen:
        verdict = "" if threshold is None else (" anomalous" if s.scores[i] >= threshold else " good")
        panels.append(
            {
                "image": view(load_rgb(data_root / s.paths[i])),
                "map": s.maps[i],
                "mask": mask_of.get(int(i)),
                "caption": f"{s.paths[i]}\nscore {s.scores[i]:.3f}{verdict}",
            }
        )
    figures.maps_figure(
        plots / "maps.png", f"most (top) and least (bottom) anomalous test images\n{title}", panels, float(np.quantile(s.maps, 0.999))
    )


def main(params: Params, category: str, backbone: str) -> str:
    bb = params.backbone(backbone)
    params.category(category)
    dataset, settings = params.run.dataset, params.evaluate
    folder = ModelFolder.of(dataset, category, backbone)
    folder.require((folder.train, folder.test, folder.bank), "run the extract and coreset stages first (dvc repro)")
    data_root = paths.data_dir(dataset, category)
    check_features(folder, fingerprint(bb, "", params.aggregation.describe(bb.layer_dim or bb.target_dim), (0, 0), params.extract.precision))
    scored = score(folder, bb.crop, settings, engine_settings.from_env())
    pixel = pixel_metrics(scored, data_root, bb, settings)
    threshold, threshold_metrics = decision(scored, settings.threshold_quantile)
    record = metrics_record(scored, bb, settings, pixel, threshold_metrics)
    title = f"{record['dataset']}/{record['category']} x {bb.name} ({record['weights']})"
    write_plots(paths.plots_dir(dataset, category, backbone), title, scored, pixel, data_root, bb, record, threshold)
    folder.write_card(model_card(scored, record, bb, settings, threshold))
    out = paths.metrics_file(dataset, category, backbone)
    write_json(out, record)
    return f"{dataset}/{category} x {backbone}: image AUROC {record['image_auroc']}, pixel AUROC {record['pixel_auroc']}, AUPRO {record['aupro']} -> {out}"
