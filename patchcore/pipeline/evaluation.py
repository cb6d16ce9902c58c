"""What evaluate computes beside the scores: pixel metrics, the metrics record, the model card, per-image decisions and
the plots."""

from __future__ import annotations

import json

from patchcore.config import AggregationSettings, BackboneSettings, EvaluateSettings
from patchcore.config.settings import ThresholdSettings
from patchcore.core import records, thresholds
from patchcore.core.metrics import image_ap, image_auroc
from patchcore.datasets.layout import PROVENANCE
from patchcore.errors import UsageError
from patchcore.pipeline.pixel_metrics import PixelMetrics
from patchcore.pipeline.scored import Scored
from patchcore.runtime.patchcore_onnx import CONNECTIVITY
from patchcore.store.model_folder import ModelCard, ModelFolder, compare


def check_features(folder: ModelFolder, expected: dict) -> None:
    """train.h5, test.h5 and bank.h5 must come from the same features, and those from params.yaml's settings now
    (``expected``: params.yaml's fingerprint; the weights' identity and the grid only the files know)."""
    prints = {path.name: folder.features_fingerprint(path) for path in (folder.bank, folder.test, folder.train)}
    compare(prints["bank.h5"], str(folder.bank), prints["test.h5"], str(folder.test))
    compare(prints["bank.h5"], str(folder.bank), prints["train.h5"], str(folder.train))
    known = {k: prints["bank.h5"].get(k) for k in ("weights", "grid")}
    compare({**expected, **known}, "params.yaml", prints["bank.h5"], str(folder.bank))


def _image_size(s: Scored) -> dict | None:
    """The test images' sizes: the smallest and largest width and height, in pixels."""
    if not len(s.sizes):
        return None
    heights, widths = s.sizes[:, 0], s.sizes[:, 1]
    return {"width": [int(widths.min()), int(widths.max())], "height": [int(heights.min()), int(heights.max())]}


def _geometry(backbone: BackboneSettings) -> dict:
    """How the images became network inputs: the record states it beside the numbers it made."""
    described = backbone.geometry.describe(backbone.crop)
    sizes = {"crop": backbone.crop} if backbone.multi_view else {"resize": backbone.resize, "crop": backbone.crop}
    return {**described, **sizes}


def _no_view(backbone: BackboneSettings, network_auroc: float | None) -> str | None:
    """Why the network-view pixel metrics are null where the full-size ones may not be (None: they are not)."""
    if backbone.multi_view:
        return f"geometry {backbone.geometry.name}: an image is not one network view; see full_size"
    if network_auroc is None:
        return "every defect pixel lies outside the network's view (resize and centre crop); see full_size"
    return None


NETWORK_VIEW = ("pixel_auroc", "aupro", "aupro_005", "ci95.pixel_auroc", "ci95.aupro")


def _reasons(s: Scored, no_pixel: bool, data: dict, reasons: dict, view: str | None = None) -> dict:
    """Why each null of the record is null: the threshold's reasons plus those of the test set and the data, and
    ``view``: why the network-view pixel metrics are null where the full-size ones are not."""
    reasons = dict(reasons)
    if view and not no_pixel:
        reasons.update({key: view for key in NETWORK_VIEW})
    no_auroc = records.no_auroc(s.labels)
    if no_auroc:
        reasons.update({"image_auroc": no_auroc, "image_ap": no_auroc, "ci95": no_auroc})
    if no_pixel:
        why = "no defect masks among the test images" if len(s.labels) else no_auroc
        for key in ("pixel_auroc", "aupro", "aupro_005", "full_size", "ci95.pixel_auroc", "ci95.aupro"):
            reasons.setdefault(key, why)
    # the segmentation F1 binarises at the label-free pixel threshold: null with it, for its reason
    reasons.setdefault("full_size.seg_f1", reasons.get("pixel_threshold", "no pixel threshold"))
    if not len(s.labels):
        reasons["image_size"] = "no test images"
    reasons.setdefault("ci95", "a resample without defect pixels gives no pixel AUROC or AUPRO")
    if data.get("source") is None:
        reasons["data"] = (
            f"{data['location']} was not made by 'patchcore download' (no {PROVENANCE}): its source is unknown"
        )
    elif data.get("sha256") is None:
        reasons["data.sha256"] = data.get("sha256_note", "no archive")
    if json.loads(str(s.attrs["aggregation"])).get("layer_dim") is None:
        reasons["features.layer_dim"] = (
            "layer_weighting 'channels' pools every layer's channels at once: no per-layer length"
        )
    return reasons


def metrics_record(
    s: Scored,
    backbone: BackboneSettings,
    settings: EvaluateSettings,
    pixel: PixelMetrics,
    chosen: dict | None,
    pixel_rule: dict | None,
    data: dict,
    reasons: dict,
) -> dict:
    pix, pro = pixel.auroc, pixel.aupro
    no_auroc = records.no_auroc(s.labels)
    reasons = _reasons(s, pixel.full_size["pixel_auroc"] is None, data, reasons, _no_view(backbone, pix))
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
        "devices": {
            "extract": str(s.attrs["extract_device"]),
            "coreset": str(s.bank_attrs["coreset_device"]),
            "evaluate": s.device,
        },
        "image_auroc": None if no_auroc else round(image_auroc(s.labels, s.scores), 6),
        "image_ap": None if no_auroc else round(image_ap(s.labels, s.scores), 6),
        "pixel_auroc": None if pix is None else round(pix, 6),
        "aupro": None if pro is None else round(pro, 6),
        "aupro_005": None if pixel.aupro_005 is None else round(pixel.aupro_005, 6),
        "full_size": pixel.full_size,
        "image_size": _image_size(s),
        "geometry": _geometry(backbone),
        "ci95": pixel.intervals,
        "bootstrap_resamples": settings.bootstrap,
        "aupro_max_fpr": settings.max_fpr,
        "calibration": s.calibration,
        "threshold_metrics": threshold_metrics,
        "pixel_threshold": pixel_rule,
        "reweighting": s.reweighting,
        "search": s.search,
        **_counts(s),
        "blur_sigma": settings.blur_sigma,
    }
    record["null_reasons"] = records.null_reasons(record, reasons)
    return record


def _counts(s: Scored) -> dict:
    """How many images and patches the record's figures come from."""
    calibration = s.calibration
    return {
        "pixel_skipped_defect_types": sorted(
            {s.defects[i] for i in range(len(s.labels)) if s.labels[i] == 1 and not s.masks[i]}
        ),
        "test_images": int(len(s.labels)),
        "good_test_images": int((s.labels == 0).sum()),
        "defective_images": int(s.labels.sum()),
        "masks_used": int(sum(1 for m in s.masks if m)),
        "train_fraction": float(s.attrs["train_fraction"]),
        "train_images": calibration["train_images"],
        "bank_images": calibration["train_images"]
        - calibration.get("bank_excludes", calibration["holdout_images"] if calibration["method"] == "split" else 0),
        "bank_size": s.bank_size,
        "coreset_ratio": float(s.bank_attrs["coreset_ratio"]),
        "train_patches": int(s.bank_attrs["train_patches"]),
    }


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
        heat_scale=float(
            max(s.held_scores.max() if len(s.held_scores) else (s.scores.max() if len(s.scores) else 0.0), 1e-12)
        ),
        approximate_above=settings.approximate_above,
        channels_last=bool(s.attrs.get("channels_last", False)),
        precision=str(s.attrs["precision"]),
        fingerprint=json.loads(str(s.bank_attrs["fingerprint"])),
    )


def choose_thresholds(s: Scored, rule: ThresholdSettings) -> tuple[dict | None, dict | None, dict]:
    """The image threshold and the pixel threshold by ``rule``, and why either is null (none chosen)."""
    try:
        chosen, reasons = thresholds.choose(
            rule.method, rule.quantile, rule.value, s.held_scores, s.calibration["method"], s.labels, s.scores
        )
    except ValueError as exc:
        raise UsageError(
            f"params.yaml: 'evaluate.threshold.method' {exc}; use holdout_quantile (no labels needed) or fixed"
        ) from None
    if rule.pixel_method == "validation_mean_3std":
        if s.validation_pixels is None:
            raise UsageError(
                "params.yaml: 'evaluate.threshold.pixel_method' validation_mean_3std needs a validation split "
                "(validation/good), which this category has not; use quantile"
            )
        return chosen, thresholds.mean_3std_threshold(s.validation_pixels, len(s.held_scores), CONNECTIVITY), reasons
    pixel_rule, pixel_reasons = thresholds.pixel_threshold(s.held_map_max, rule.pixel_quantile, CONNECTIVITY)
    return chosen, pixel_rule, {**reasons, **pixel_reasons}
