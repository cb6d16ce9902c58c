"""Stage `evaluate`: score held-out and test images against the bank; metrics, threshold, pictures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .config import AggregationSettings, BackboneSettings, EvaluateSettings, Params
from .core import records, thresholds
from .core.localization import (
    PixelCounts,
    aupro,
    count_pixels,
    region_shares,
    roc_from_counts,
)
from .core.metrics import bootstrap, image_ap, image_auroc, pixel_auroc
from .core.regions import CONNECTIVITY, decide, verdict
from .datasets.images import crop_box, load_mask, load_rgb, network_view, readable
from .datasets.layout import PROVENANCE, read_provenance
from .engines import settings as engine_settings
from .engines.evaluation import Scored, score
from .errors import UsageError
from .store import decisions, figures, paths, plot_data
from .store.atomic import write_json
from .store.model_folder import ModelCard, ModelFolder, compare, fingerprint
from .store.output_set import output_set


def check_features(folder: ModelFolder, expected: dict) -> None:
    """train.h5, test.h5 and bank.h5 must come from the same features, and those from params.yaml's settings now
    (``expected``: params.yaml's fingerprint; the weights' identity and the grid only the files know)."""
    prints = {path.name: folder.features_fingerprint(path) for path in (folder.bank, folder.test, folder.train)}
    compare(prints["bank.h5"], str(folder.bank), prints["test.h5"], str(folder.test))
    compare(prints["bank.h5"], str(folder.bank), prints["train.h5"], str(folder.train))
    known = {k: prints["bank.h5"].get(k) for k in ("weights", "grid")}
    compare({**expected, **known}, "params.yaml", prints["bank.h5"], str(folder.bank))


def pixel_metrics(s: Scored, data_root: Path, backbone: BackboneSettings, settings: EvaluateSettings):
    """Pixel AUROC, AUPRO and bootstrap intervals; defective images without a mask are left out."""
    n = len(s.labels)
    pixel_rows = np.array([i for i in range(n) if s.labels[i] == 0 or s.masks[i]], dtype=np.int64)
    masks = []
    for i in pixel_rows:
        with readable(data_root / s.masks[i]):
            masks.append(load_mask(data_root / s.masks[i] if s.masks[i] else None, backbone))
    counts = pix = pro = None
    if masks and np.any(masks):  # a good-only category has no defect pixel to measure
        pixel_masks, pixel_maps = np.stack(masks), s.maps[pixel_rows]
        counts = count_pixels(pixel_masks, pixel_maps)
        pix = pixel_auroc(pixel_masks, pixel_maps)
        pro = aupro(counts.neg.sum(0), region_shares(counts.regions), settings.max_fpr)
    both = records.no_auroc(s.labels) is None
    intervals = (
        bootstrap(s.labels, s.scores, pixel_rows, counts, settings.bootstrap, settings.seed, settings.max_fpr) if settings.bootstrap and both else {}
    )
    mask_of = {int(i): m for i, m in zip(pixel_rows, masks)}  # good images all-false; unmasked defects absent
    return pix, pro, intervals, counts, mask_of


def _reasons(s: Scored, no_pixel: bool, data: dict, reasons: dict) -> dict:
    """Why each null of the record is null: the threshold's reasons plus those of the test set and the data."""
    reasons = dict(reasons)
    no_auroc = records.no_auroc(s.labels)
    if no_auroc:
        reasons.update({"image_auroc": no_auroc, "image_ap": no_auroc, "ci95": no_auroc})
    if no_pixel:
        why = "no defect masks among the test images" if len(s.labels) else no_auroc
        for key in ("pixel_auroc", "aupro", "ci95.pixel_auroc", "ci95.aupro"):
            reasons.setdefault(key, why)
    reasons.setdefault("ci95", "a resample without defect pixels gives no pixel AUROC or AUPRO")
    if data.get("source") is None:
        reasons["data"] = f"{data['location']} was not made by 'patchcore download' (no {PROVENANCE}): its source is unknown"
    elif data.get("sha256") is None:
        reasons["data.sha256"] = data.get("sha256_note", "no archive")
    if json.loads(str(s.attrs["aggregation"])).get("layer_dim") is None:
        reasons["features.layer_dim"] = "layer_weighting 'channels' pools every layer's channels at once: no per-layer length"
    return reasons


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
    no_auroc = records.no_auroc(s.labels)
    reasons = _reasons(s, pix is None, data, reasons)
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
        "image_ap": None if no_auroc else round(image_ap(s.labels, s.scores), 6),
        "pixel_auroc": None if pix is None else round(pix, 6),
        "aupro": None if pro is None else round(pro, 6),
        "ci95": intervals,
        "bootstrap_resamples": settings.bootstrap,
        "aupro_max_fpr": settings.max_fpr,
        "calibration": s.calibration,
        "threshold_metrics": threshold_metrics,
        "pixel_threshold": pixel_rule,
        "reweighting": s.reweighting,
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
    record["null_reasons"] = records.null_reasons(record, reasons)
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
        reweight_neighbours=settings.reweight_neighbours if s.reweighting["on"] else 0,  # as scored: predict follows it
        blur_sigma=settings.blur_sigma,
        heat_scale=float(max(s.held_scores.max() if len(s.held_scores) else (s.scores.max() if len(s.scores) else 0.0), 1e-12)),
        approximate_above=settings.approximate_above,
        channels_last=bool(s.attrs.get("channels_last", False)),
        precision=str(s.attrs["precision"]),
        fingerprint=json.loads(str(s.bank_attrs["fingerprint"])),
    )


def decided(
    s: Scored, backbone: BackboneSettings, threshold: float | None, pixel_threshold: float | None
) -> Iterator[tuple[dict, np.ndarray | None]]:
    """Per test image: its decision (verdict, regions in original pixels) and its mask at the original size."""
    for path, value, amap, hw in zip(s.paths, s.scores, s.maps, s.sizes):
        size = (int(hw[0]), int(hw[1]))
        entry, _, mask = decide(float(value), amap, crop_box(backbone, size), size, threshold, pixel_threshold)
        yield {"image": path, **entry}, mask


def write_plots(
    plots: Path, pictures: Path, title: str, s: Scored, pixel: tuple, root: Path, bb: BackboneSettings, record: dict, threshold: float | None
) -> None:
    """Plot data and figures into ``plots`` (in git), the pictures of the user's images into ``pictures`` (DVC-cached)."""
    counts: PixelCounts | None = pixel[3]
    mask_of: dict = pixel[4]
    curves = plot_data.image_curves(s.labels, s.scores)
    plot_data.write_curves(plots, {**curves, "pro": plot_data.pro_points(counts)})
    image_roc = ([r["fpr"] for r in curves["roc"]], [r["tpr"] for r in curves["roc"]])
    pixel_roc = roc_from_counts(counts.neg.sum(0), counts.pos.sum(0)) if counts is not None else None
    note = None if record["image_auroc"] is not None else record["null_reasons"]["image_auroc"]
    figures.roc_figure(plots / "roc.png", title, image_roc, record["image_auroc"], pixel_roc, record["pixel_auroc"], note)
    anomalous = None if threshold is None else [verdict(v, threshold) == "anomalous" for v in s.scores]
    plot_data.write_scores(plots / "scores.csv", list(s.paths), s.labels, s.scores, anomalous)
    order = np.argsort(-s.scores, kind="stable")
    chosen = list(order[:3]) + list(order[-3:][::-1]) if len(order) > 6 else list(order)
    view = network_view(bb)
    panels = []
    for i in chosen:
        said = "" if threshold is None else f" {verdict(s.scores[i], threshold)}"
        with readable(root / s.paths[i]):
            image = view(load_rgb(root / s.paths[i]))
        panels.append(
            {
                "image": image,
                "map": s.maps[i],
                "mask": mask_of.get(int(i)),
                "caption": f"{s.paths[i]}\nscore {s.scores[i]:.3f}{said}",
            }
        )
    vmax = float(np.quantile(s.maps, 0.999)) if len(s.maps) else 1.0
    figures.maps_figure(pictures / "maps.png", f"most (top) and least (bottom) anomalous test images\n{title}", panels, vmax)


def main(params: Params, category: str, backbone: str) -> str:
    bb = params.backbone(backbone)
    params.category(category)
    dataset, settings = params.run.dataset, params.evaluate
    folder = ModelFolder.of(dataset, category, backbone)
    folder.require((folder.train, folder.test, folder.bank), "run the extract and coreset stages first (dvc repro)")
    data_root = paths.data_dir(dataset, category)
    described = params.aggregation.describe(bb.layer_dim or bb.target_dim)
    check_features(folder, fingerprint(bb, "", described, (0, 0), params.extract.precision, dataset, category))
    out = paths.metrics_file(dataset, category, backbone)
    files, folders = paths.evaluate_outputs(dataset, category, backbone)
    with output_set(files, folders):  # every output reserved now, all put in place together at the end
        scored = score(folder, bb.crop, settings, engine_settings.from_env())
        pixel = pixel_metrics(scored, data_root, bb, settings)
        rule = settings.threshold
        try:
            chosen, reasons = thresholds.choose(
                rule.method, rule.quantile, rule.value, scored.held_scores, scored.calibration["method"], scored.labels, scored.scores
            )
        except ValueError as exc:
            raise UsageError(f"params.yaml: 'evaluate.threshold.method' {exc}; use holdout_quantile (no labels needed) or fixed") from None
        pixel_rule, pixel_reasons = thresholds.pixel_threshold(scored.held_map_max, rule.pixel_quantile, CONNECTIVITY)
        record = metrics_record(scored, bb, settings, pixel, chosen, pixel_rule, read_provenance(data_root), {**reasons, **pixel_reasons})
        threshold = None if chosen is None else chosen["threshold"]
        pixel_threshold = None if pixel_rule is None else pixel_rule["threshold"]
        title = f"{record['dataset']}/{record['category']} x {bb.name} ({record['weights']})"
        plots, pictures = paths.plots_dir(dataset, category, backbone), paths.pictures_dir(dataset, category, backbone)
        write_plots(plots, pictures, title, scored, pixel, data_root, bb, record, threshold)
        why = {"threshold": record["null_reasons"].get("threshold_metrics"), "pixel_threshold": record["null_reasons"].get("pixel_threshold")}
        levels = {"threshold": threshold, "pixel_threshold": pixel_threshold, "connectivity": CONNECTIVITY}
        decisions.write_decisions(plots, pictures, decided(scored, bb, threshold, pixel_threshold), len(scored.paths), levels, why)
        folder.write_card(model_card(scored, record, bb, settings))
        write_json(out, record)
    lines = [
        f"{dataset}/{category} x {backbone}: image AUROC {record['image_auroc']}, pixel AUROC {record['pixel_auroc']}, AUPRO {record['aupro']} -> {out}"
    ]
    if chosen is not None:
        frr = record["threshold_metrics"]["false_reject_rate"]
        lines.append(f"threshold {threshold} ({chosen['method']}, from {chosen['scores_from']} scores); false-reject rate on test/good {frr}")
        if "warning" in chosen:
            lines.append(f"warning: {chosen['warning']}")
    if "note" in record["reweighting"]:
        lines.append(f"warning: {record['reweighting']['note']}")
    return "\n".join(lines)
