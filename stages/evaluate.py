"""Stage `evaluate`: score held-out and test images against the bank; metrics, threshold, pictures."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import h5py
import numpy as np
from PIL import Image
from sklearn.metrics import roc_curve
from tqdm import tqdm

from .config import AggregationSettings, BackboneSettings, EvaluateSettings, Params
from .config.settings import ThresholdSettings
from .core import thresholds
from .core.localization import (
    PixelCounts,
    aupro,
    count_pixels,
    region_shares,
    roc_from_counts,
)
from .core.metrics import bootstrap, image_auroc, pixel_auroc
from .core.regions import CONNECTIVITY, find_regions, to_original
from .datasets.images import crop_box, load_mask, load_rgb, network_view
from .datasets.layout import PROVENANCE
from .engines import ray_pool as engines
from .engines import settings as engine_settings
from .engines.score_worker import ScoreWorker
from .engines.settings import EngineSettings
from .errors import UsageError
from .store import figures, h5io, paths
from .store.atomic import atomic_dir, atomic_path, write_json
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

    held_scores: np.ndarray  # image scores of good training images scored out of the bank (folds or split)
    held_map_max: np.ndarray  # the highest value of each of their anomaly maps
    calibration: dict  # how those images were held out
    scores: np.ndarray
    maps: np.ndarray
    labels: np.ndarray
    paths: list[str]
    masks: list[str]
    defects: list[str]
    sizes: np.ndarray  # (n, 2) original height, width of each test image
    attrs: dict
    bank_attrs: dict
    search: dict
    bank_size: int
    device: str


FEATURES = ("patches", "labels", "paths", "masks", "defects", "sizes")
BANK = ("bank", "holdout_images", "image_folds", "fold_rows", "fold_starts")


def check_features(folder: ModelFolder, expected: dict) -> None:
    """train.h5, test.h5 and bank.h5 must come from the same features, and those from params.yaml's settings now
    (``expected``: params.yaml's fingerprint; the weights' identity and the grid only the files know)."""
    prints = {path.name: folder.features_fingerprint(path) for path in (folder.bank, folder.test, folder.train)}
    compare(prints["bank.h5"], str(folder.bank), prints["test.h5"], str(folder.test))
    compare(prints["bank.h5"], str(folder.bank), prints["train.h5"], str(folder.train))
    known = {k: prints["bank.h5"].get(k) for k in ("weights", "grid")}
    compare({**expected, **known}, "params.yaml", prints["bank.h5"], str(folder.bank))


def _held_out(
    folder: ModelFolder, b: dict, settings: EvaluateSettings, size: int, engine: EngineSettings, scorer
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Scores and map maxima of the good training images that the scoring bank never saw.

    k-fold: each fold's images against the coreset of the other folds (its rows of train.h5);
    split: the held-out images against the deployed bank (``scorer``).
    """
    folds, held = b["image_folds"], b["holdout_images"]
    n_folds = int(folds.max()) + 1 if len(folds) else 0
    calibration = {"train_images": int(len(folds)), "holdout_fraction": float(b["attrs"]["holdout_fraction"]), "folds": n_folds}
    with h5io.reading(folder.train, folder.rebuild(folder.train), datasets=FEATURES, attrs=("grid",)) as f:
        if not n_folds:
            scores, maps = _score_rows(f, held, scorer, settings, size, "score held-out")
            method = "split" if len(held) else "none"
            return (
                scores,
                maps.reshape(len(maps), -1).max(axis=1) if len(maps) else np.zeros(0),
                {**calibration, "method": method, "holdout_images": int(len(held))},
            )
        scores, peaks = np.zeros(len(folds)), np.zeros(len(folds))
        for k in range(n_folds):
            images = np.flatnonzero(folds == k)
            fold_bank = h5io.take_rows(f["patches"], b["fold_rows"][b["fold_starts"][k] : b["fold_starts"][k + 1]])
            with engines.pool(ScoreWorker, (fold_bank, settings.approximate_above, settings.device, "evaluate.device"), engine) as fold_scorer:
                s, m = _score_rows(f, images, fold_scorer, settings, size, f"score fold {k + 1}/{n_folds}")
            scores[images], peaks[images] = s, m.reshape(len(m), -1).max(axis=1)
    return scores, peaks, {**calibration, "method": f"{n_folds}-fold", "holdout_images": int(len(folds))}


def score(folder: ModelFolder, size: int, settings: EvaluateSettings, engine: EngineSettings | None = None) -> Scored:
    engine = engine or EngineSettings()
    if settings.faiss_threads:
        faiss.omp_set_num_threads(settings.faiss_threads)
    with h5io.reading(folder.bank, folder.rebuild(folder.bank), datasets=BANK) as f:
        b = {k: f[k][()] for k in BANK} | {"attrs": dict(f.attrs)}
    # the CPU searches with faiss, a GPU with torch (exact on both; see core.scoring)
    with engines.pool(ScoreWorker, (b["bank"], settings.approximate_above, settings.device, "evaluate.device"), engine) as scorer:
        search, bank_size, device = scorer.first("search")
        held_scores, held_peaks, calibration = _held_out(folder, b, settings, size, engine, scorer)
        with h5io.reading(folder.test, folder.rebuild(folder.test), datasets=FEATURES, attrs=("grid",)) as f:
            n = f["labels"].shape[0]
            scores, maps = _score_rows(f, np.arange(n), scorer, settings, size, "score test")
            if search["index"].startswith("approximate") and n:
                # recall of the approximate index on (up to) 20,000 test patches spread over the set
                rows = np.unique(np.linspace(0, f["patches"].shape[0] - 1, min(20000, f["patches"].shape[0])).astype(np.int64))
                search["recall_at_1"] = round(next(scorer.map("recall_at_1", [(f["patches"][rows],)])), 6)
            return Scored(
                held_scores,
                held_peaks,
                calibration,
                scores,
                maps,
                f["labels"][()],
                h5io.read_strings(f["paths"]),
                h5io.read_strings(f["masks"]),
                h5io.read_strings(f["defects"]),
                f["sizes"][()],
                dict(f.attrs),
                b["attrs"],
                search,
                bank_size,
                device,
            )


def _both_classes(labels: np.ndarray) -> str | None:
    """Why image AUROC (and its bootstrap) cannot be computed on these labels, or None when it can."""
    if not len(labels):
        return "no test images: the category has train/good only"
    if not (labels == 1).any():
        return "no defective test images (a good-only category): AUROC needs good and defective images"
    if not (labels == 0).any():
        return "no good test images: AUROC needs good and defective images"
    return None


def pixel_metrics(s: Scored, data_root: Path, backbone: BackboneSettings, settings: EvaluateSettings):
    """Pixel AUROC, AUPRO and bootstrap intervals; defective images without a mask are left out."""
    n = len(s.labels)
    pixel_rows = np.array([i for i in range(n) if s.labels[i] == 0 or s.masks[i]], dtype=np.int64)
    masks = [load_mask(data_root / s.masks[i] if s.masks[i] else None, backbone) for i in pixel_rows]
    counts = None
    if masks and np.any(masks):
        pixel_masks, pixel_maps = np.stack(masks), s.maps[pixel_rows]
        counts = count_pixels(pixel_masks, pixel_maps)
    pix = pixel_auroc(np.stack(masks), s.maps[pixel_rows]) if counts is not None else None
    pro = aupro(counts.neg.sum(0), region_shares(counts.regions), settings.max_fpr) if counts is not None else None
    both = _both_classes(s.labels) is None
    intervals = (
        bootstrap(s.labels, s.scores, pixel_rows, counts, settings.bootstrap, settings.seed, settings.max_fpr) if settings.bootstrap and both else {}
    )
    mask_of = {int(i): m for i, m in zip(pixel_rows, masks)}  # good images all-false; unmasked defects absent
    return pix, pro, intervals, counts, mask_of


def decision(s: Scored, rule: ThresholdSettings) -> tuple[dict | None, dict]:
    """The image threshold by ``rule`` (how it was chosen, from how many scores) and a reason for each null."""
    held = s.held_scores
    few = len(held) < thresholds.FEW_SCORES
    if rule.method == "fixed":
        assert rule.value is not None  # the settings require it
        return {"method": "fixed", "threshold": round(rule.value, 6), "chosen_on": "params.yaml evaluate.threshold.value", "scores_from": 0}, {}
    if rule.method == "f1_max":
        if not (s.labels == 1).any():
            raise UsageError(
                "params.yaml: 'evaluate.threshold.method' f1_max needs defective test images, and this category has none; "
                "use holdout_quantile (no labels needed) or fixed"
            )
        value, f1 = thresholds.f1_max(s.labels, s.scores)
        chosen = "the labelled test set (F1-maximising, as anomalib's adaptive threshold): its test metrics are optimistic"
        return {"method": "f1_max", "threshold": round(value, 6), "chosen_on": chosen, "scores_from": int(len(s.labels))}, {}
    if not len(held):
        reason = "no held-out good images (coreset.holdout_folds and holdout_fraction are 0, or one training image): no label-free threshold"
        return None, {"threshold_metrics": reason}
    lo, hi, note = thresholds.quantile_interval(held, rule.quantile)
    record = {
        "method": "holdout_quantile",
        "threshold": round(float(np.quantile(held, rule.quantile)), 6),
        "chosen_on": f"{len(held)} good training images scored out of the bank ({s.calibration['method']})",
        "scores_from": int(len(held)),
        "quantile": rule.quantile,
        "threshold_ci95": [None if lo is None else round(lo, 6), None if hi is None else round(hi, 6)],
    }
    reasons = {"threshold_metrics.threshold_ci95": note} if note else {}
    if few:
        record["warning"] = (
            f"the threshold comes from only {len(held)} scores (fewer than {thresholds.FEW_SCORES}): the {rule.quantile:g} quantile "
            "is in effect one of the few largest; use coreset.holdout_folds to score every training image"
        )
    return record, reasons


def pixel_decision(s: Scored, rule: ThresholdSettings) -> tuple[dict | None, dict]:
    """The label-free pixel threshold: a quantile of the held-out good images' map maxima."""
    if not len(s.held_map_max):
        return None, {"pixel_threshold": "no held-out good images: no label-free pixel threshold, so no regions"}
    record = {
        "threshold": round(float(np.quantile(s.held_map_max, rule.pixel_quantile)), 6),
        "quantile": rule.pixel_quantile,
        "of": "the highest anomaly-map value of each held-out good image",
        "scores_from": int(len(s.held_map_max)),
        "connectivity": CONNECTIVITY,
    }
    return record, {}


def _nulls(obj: object, prefix: str = "") -> list[str]:
    """Dotted paths of every null value in a record (list items by index)."""
    if obj is None:
        return [prefix]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    return [p for k, v in items for p in _nulls(v, f"{prefix}.{k}" if prefix else str(k))]


def null_reasons(record: dict, reasons: dict[str, str]) -> dict[str, str]:
    """A reason for every null in ``record``: its own, or that of the nearest enclosing key."""
    out = {}
    for path in _nulls(record):
        parts = path.split(".")
        for depth in range(len(parts), 0, -1):
            key = ".".join(parts[:depth])
            if key in reasons:
                out[path] = reasons[key]
                break
        else:
            raise AssertionError(f"evaluate wrote a null without a reason: {path}")
    return out


def provenance(data_root: Path) -> dict:
    """Where the category's images came from, as the download stage recorded it."""
    path = data_root / PROVENANCE
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return {"source": None, "location": str(data_root)}
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"{path}: unreadable ({exc.__class__.__name__}); rebuild the data with 'dvc repro -f -s download'") from None


def metrics_record(
    s: Scored,
    backbone: BackboneSettings,
    settings: EvaluateSettings,
    pixel: tuple,
    chosen: dict | None,
    pixel_rule: dict | None,
    data: dict,
    reasons: dict,
) -> dict:
    pix, pro, intervals = pixel[:3]
    no_auroc = _both_classes(s.labels)
    reasons = dict(reasons)
    if no_auroc:
        reasons.update({"image_auroc": no_auroc, "ci95": no_auroc})
    if pix is None:
        why = "no defect masks among the test images" if len(s.labels) else no_auroc
        for key in ("pixel_auroc", "aupro", "ci95.pixel_auroc", "ci95.aupro"):
            reasons.setdefault(key, why)
    reasons.setdefault("ci95", "a resample without defect pixels gives no pixel AUROC or AUPRO")
    if data.get("source") is None:
        reasons["data"] = f"{data['location']} was not made by 'patchcore download' (no {PROVENANCE}): its source is unknown"
    elif data.get("sha256") is None:
        reasons["data.sha256"] = data.get("sha256_note", "no archive")
    threshold_metrics = None
    if chosen is not None:
        at, more = thresholds.at_threshold(s.labels, s.scores, chosen["threshold"])
        threshold_metrics = {**chosen, **at, "holdout_images": s.calibration["holdout_images"]}
        reasons.update({f"threshold_metrics.{k}": v for k, v in more.items()})
    record = {
        "dataset": str(s.attrs["dataset"]),
        "category": str(s.attrs["category"]),
        "data": {k: v for k, v in data.items() if k != "sha256_note"},
        "backbone": backbone.name,
        "weights": str(s.attrs["weights"]),
        "features": json.loads(str(s.attrs["aggregation"])),
        "target_dim": backbone.target_dim,
        "precision": str(s.attrs["precision"]),
        "devices": {"extract": str(s.attrs["extract_device"]), "coreset": str(s.bank_attrs["coreset_device"]), "evaluate": s.device},
        "image_auroc": None if no_auroc else round(image_auroc(s.labels, s.scores), 6),
        "pixel_auroc": None if pix is None else round(pix, 6),
        "aupro": None if pro is None else round(pro, 6),
        "ci95": intervals,
        "bootstrap_resamples": settings.bootstrap,
        "aupro_max_fpr": settings.max_fpr,
        "calibration": s.calibration,
        "threshold_metrics": threshold_metrics,
        "pixel_threshold": pixel_rule,
        "reweighting": {"on": settings.reweight_neighbours > 1, "neighbours": settings.reweight_neighbours},
        "search": s.search,
        "pixel_skipped_defect_types": sorted({s.defects[i] for i in range(len(s.labels)) if s.labels[i] == 1 and not s.masks[i]}),
        "test_images": int(len(s.labels)),
        "good_test_images": int((s.labels == 0).sum()),
        "defective_images": int(s.labels.sum()),
        "masks_used": int(sum(1 for m in s.masks if m)),
        "train_fraction": float(s.attrs["train_fraction"]),
        "train_images": s.calibration["train_images"],
        "bank_images": s.calibration["train_images"] - (s.calibration["holdout_images"] if s.calibration["method"] == "split" else 0),
        "bank_size": s.bank_size,
        "coreset_ratio": float(s.bank_attrs["coreset_ratio"]),
        "train_patches": int(s.bank_attrs["train_patches"]),
        "blur_sigma": settings.blur_sigma,
    }
    record["null_reasons"] = null_reasons(record, reasons)
    return record


def model_card(s: Scored, record: dict, backbone: BackboneSettings, settings: EvaluateSettings) -> ModelCard:
    chosen, pixel_rule = record["threshold_metrics"], record["pixel_threshold"]
    # normalised scores: min-max against the held-out good images (the test images when there are none)
    reference = s.held_scores if len(s.held_scores) else s.scores
    return ModelCard(
        backbone=backbone,
        aggregation=AggregationSettings(**{k: v for k, v in record["features"].items() if k != "layer_dim"}),
        weights=record["weights"],
        dataset=record["dataset"],
        category=record["category"],
        data=record["data"],
        threshold=None if chosen is None else chosen["threshold"],
        threshold_method=settings.threshold.method,
        score_range=[round(float(reference.min()), 6), round(float(reference.max()), 6)] if len(reference) else None,
        pixel_threshold=None if pixel_rule is None else pixel_rule["threshold"],
        connectivity=CONNECTIVITY,
        reweight_neighbours=settings.reweight_neighbours,
        blur_sigma=settings.blur_sigma,
        heat_scale=float(max(s.held_scores.max() if len(s.held_scores) else (s.scores.max() if len(s.scores) else 0.0), 1e-12)),
        approximate_above=settings.approximate_above,
        channels_last=bool(s.attrs.get("channels_last", False)),
        precision=str(s.attrs["precision"]),
        fingerprint=json.loads(str(s.bank_attrs["fingerprint"])),
    )


def test_regions(
    s: Scored, backbone: BackboneSettings, threshold: float | None, pixel_threshold: float | None
) -> Iterator[tuple[int, dict, np.ndarray | None]]:
    """Per test image: its decision record (verdict, regions in original pixels) and its mask at the original size."""
    for i, (path, value, amap) in enumerate(zip(s.paths, s.scores, s.maps)):
        size = (int(s.sizes[i][0]), int(s.sizes[i][1]))
        entry: dict = {
            "image": path,
            "score": round(float(value), 6),
            "verdict": None if threshold is None else ("anomalous" if value >= threshold else "good"),
        }
        mask = None
        if pixel_threshold is not None:
            mask, entry["regions"] = find_regions(to_original(amap, crop_box(backbone, size), size), pixel_threshold)
        yield i, entry, mask


def mask_name(path: str) -> str:
    """A test image's mask file: its relative path flattened (test/crack/001.png -> test__crack__001.png)."""
    return path.rsplit(".", 1)[0].replace("/", "__") + ".png"


def write_decisions(
    plots: Path, s: Scored, backbone: BackboneSettings, threshold: float | None, pixel_threshold: float | None, reasons: dict
) -> None:
    """regions.json (every test image's verdict and regions) and masks/ (one PNG mask per image, original size)."""
    entries = []
    with atomic_dir(plots / "masks") as tmp:
        for _, entry, mask in tqdm(test_regions(s, backbone, threshold, pixel_threshold), total=len(s.paths), desc="regions", unit="image"):
            if mask is not None:
                entry["mask"] = f"masks/{mask_name(entry['image'])}"
                Image.fromarray(mask.astype(np.uint8) * 255).save(tmp / mask_name(entry["image"]), format="png")
            entries.append(entry)
        index = {"connectivity": CONNECTIVITY, "pixel_threshold": pixel_threshold, "images": [e["image"] for e in entries if "mask" in e]}
        write_json(tmp / "index.json", index)
    doc: dict = {
        "threshold": threshold,
        "pixel_threshold": pixel_threshold,
        "connectivity": CONNECTIVITY,
        "units": "pixels of the original image: x, y top-left, width, height, area; max_score in anomaly-map units",
        "images": entries,
    }
    if threshold is None or pixel_threshold is None:
        why = {"threshold": reasons.get("threshold_metrics"), "pixel_threshold": reasons.get("pixel_threshold")}
        doc["null_reasons"] = {k: why[k] for k in why if doc[k] is None}
    write_json(plots / "regions.json", doc)


def write_plots(
    plots: Path, title: str, s: Scored, pixel: tuple, data_root: Path, backbone: BackboneSettings, record: dict, threshold: float | None
) -> None:
    counts: PixelCounts | None = pixel[3]
    mask_of: dict = pixel[4]
    plots.mkdir(parents=True, exist_ok=True)
    has_roc = record["image_auroc"] is not None
    fpr, tpr, _ = roc_curve(s.labels, s.scores) if has_roc else (np.zeros(0), np.zeros(0), None)
    write_json(plots / "roc.json", {"roc": [{"fpr": round(float(a), 6), "tpr": round(float(b), 6)} for a, b in zip(fpr, tpr)]})
    pixel_roc = roc_from_counts(counts.neg.sum(0), counts.pos.sum(0)) if counts is not None else None
    note = None if has_roc else record["null_reasons"]["image_auroc"]
    figures.roc_figure(plots / "roc.png", title, (fpr, tpr), record["image_auroc"], pixel_roc, record["pixel_auroc"], note)
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
    vmax = float(np.quantile(s.maps, 0.999)) if len(s.maps) else 1.0
    figures.maps_figure(plots / "maps.png", f"most (top) and least (bottom) anomalous test images\n{title}", panels, vmax)


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
    chosen, reasons = decision(scored, settings.threshold)
    pixel_rule, pixel_reasons = pixel_decision(scored, settings.threshold)
    record = metrics_record(scored, bb, settings, pixel, chosen, pixel_rule, provenance(data_root), {**reasons, **pixel_reasons})
    threshold = None if chosen is None else chosen["threshold"]
    pixel_threshold = None if pixel_rule is None else pixel_rule["threshold"]
    title = f"{record['dataset']}/{record['category']} x {bb.name} ({record['weights']})"
    plots = paths.plots_dir(dataset, category, backbone)
    write_plots(plots, title, scored, pixel, data_root, bb, record, threshold)
    write_decisions(plots, scored, bb, threshold, pixel_threshold, record["null_reasons"])
    folder.write_card(model_card(scored, record, bb, settings))
    out = paths.metrics_file(dataset, category, backbone)
    write_json(out, record)
    lines = [
        f"{dataset}/{category} x {backbone}: image AUROC {record['image_auroc']}, pixel AUROC {record['pixel_auroc']}, AUPRO {record['aupro']} -> {out}"
    ]
    if chosen is not None:
        frr = record["threshold_metrics"]["false_reject_rate"]
        lines.append(f"threshold {threshold} ({chosen['method']}, from {chosen['scores_from']} scores); false-reject rate on test/good {frr}")
        if "warning" in chosen:
            lines.append(f"warning: {chosen['warning']}")
    return "\n".join(lines)
