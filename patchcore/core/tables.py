"""Stage `summarize` and the metric gate: tables over backbones and categories (pure dict code)."""

from __future__ import annotations

import math

METRICS = ("image_auroc", "image_ap", "pixel_auroc", "aupro", "aupro_005")
FULL_SIZE = ("pixel_auroc", "aupro", "aupro_005", "seg_f1")  # at each image's own size (MVTec's definition)
GATED = ("auroc", "aupro", "aupro_005", "seg_f1")  # the endings of the summary keys the gate holds
# each benchmark's own headline figures (evaluate's blocks; docs/evaluation.md), carried into the summary and averaged
OWNERS = {
    "mvtec_ad2": ("au_pro_005", "au_pro_03", "image_auroc_map_max"),
    "mvtec_loco": ("image_auroc", "au_spro_005", "au_spro_03"),
}
SOURCE_OF = {
    "f1_at_threshold": "threshold_metrics.f1",
    "false_reject_rate": "threshold_metrics.false_reject_rate",
}  # summary key -> record key


def describe_features(features: dict) -> str:
    """One line for the aggregation a metric was computed with, e.g. 'patch 3, border zeros, layers equal (1024
    each)'."""
    layers = features["layer_weighting"] + (f" ({features['layer_dim']} each)" if features.get("layer_dim") else "")
    return f"patch {features['patchsize']}, border {features['border']}, layers {layers}"


def summarize(dataset: str, results: dict[str, dict[str, dict]]) -> dict:
    """results[backbone][category] -> one evaluate record. Returns the summary keyed by backbone then category."""
    summary: dict = {"dataset": dataset}
    for backbone, per_category in results.items():
        entry: dict = {}
        weights = sorted({r["weights"] for r in per_category.values()})
        entry["weights"] = "; ".join(weights)
        entry["features"] = "; ".join(
            sorted({describe_features(r["features"]) for r in per_category.values() if "features" in r})
        )
        for category, record in per_category.items():
            entry[category] = {m: record.get(m) for m in METRICS}
            entry[category]["full_size"] = {m: record.get("full_size", {}).get(m) for m in FULL_SIZE}
            entry[category]["ci95"] = record.get("ci95", {})
            entry[category].update(_owners(record))
            if record.get("threshold_metrics"):
                entry[category]["f1_at_threshold"] = record["threshold_metrics"]["f1"]
                entry[category]["false_reject_rate"] = record["threshold_metrics"].get("false_reject_rate")
            # a good-only category has no AUROC: the summary says why instead of leaving a bare null
            reasons = record.get("null_reasons", {})
            nulls = {
                k: reasons.get(SOURCE_OF.get(k, k), "not reported") for k, v in entry[category].items() if v is None
            }
            for m, v in entry[category]["full_size"].items():
                if v is None:
                    nulls[f"full_size.{m}"] = reasons.get(f"full_size.{m}", reasons.get("full_size", "not reported"))
            if nulls:
                entry[category]["null_reasons"] = nulls
        full = [r.get("full_size", {}) for r in per_category.values()]
        entry["mean"] = {m: _mean([r.get(m) for r in per_category.values()]) for m in METRICS}
        entry["mean"]["full_size"] = {m: _mean([f.get(m) for f in full]) for m in FULL_SIZE}
        entry["mean"].update(_owners_mean([entry[c] for c in per_category]))
        summary[backbone] = entry
    return summary


def _owners(record: dict) -> dict:
    """A record's benchmark block, cut to its headline figures: MVTec AD 2's AU-PRO, SegF1 at each pixel threshold and
    image AUROC; LOCO's structural, logical and mean image AUROC and AU-sPRO. Empty for other data."""
    found: dict = {}
    if "au_pro_005" in record.get("mvtec_ad2", {}):
        block = record["mvtec_ad2"]
        found["mvtec_ad2"] = {m: block[m] for m in OWNERS["mvtec_ad2"]}
        found["mvtec_ad2"].update({f"seg_f1_{rule}": v["seg_f1"] for rule, v in block["seg_f1"].items()})
    if "mvtec_loco" in record:
        block = record["mvtec_loco"]
        found["mvtec_loco"] = {
            kind: {m: block[kind][m] for m in OWNERS["mvtec_loco"]}
            for kind in ("structural_anomalies", "logical_anomalies", "mean")
        }
    return found


def _owners_mean(entries: list[dict]) -> dict:
    """The benchmark figures averaged over the categories that have them (as the owners' tables report them)."""
    means: dict = {}
    for name in OWNERS:
        blocks = [e[name] for e in entries if name in e]
        if blocks:
            means[name] = _mean_of(blocks)
    return means


def _mean_of(blocks: list[dict]) -> dict:
    return {
        k: _mean_of([b[k] for b in blocks]) if isinstance(v, dict) else _mean([b.get(k) for b in blocks])
        for k, v in blocks[0].items()
    }


def _mean(values: list) -> float | None:
    """The mean of the numbers among ``values`` (None where a category has none), or None without any."""
    numbers = [v for v in values if v is not None]
    return round(sum(numbers) / len(numbers), 6) if numbers else None


def _flatten(obj: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def gate(current: dict, baseline: dict, tolerance: float) -> list[str]:
    """Problems found when ``current`` is compared with the committed ``baseline``; empty means pass.

    Every AUROC, AU-PRO and segmentation F1 in the baseline must still be there and within ``tolerance``. A
    committed null (a good-only category's AUROC) is no number to keep: it may stay null.
    """
    now, before = _flatten(current), _flatten(baseline)
    problems = []
    for key, old in sorted(before.items()):
        if not key.endswith(GATED) or not isinstance(old, (int, float)) or ".ci95." in key:
            continue
        new = now.get(key)
        if new is None and key in now:
            parent, _, name = key.rpartition(".")
            why = now.get(f"{parent}.null_reasons.{name}", "no reason given")
            problems.append(f"{key}: committed {old}, now null ({why})")
        elif not isinstance(new, (int, float)) or (isinstance(new, float) and math.isnan(new)):
            problems.append(f"{key}: committed {old}, now missing")
        elif abs(new - old) > tolerance:
            problems.append(f"{key}: committed {old}, now {new} (moved {new - old:+.4f}, tolerance {tolerance})")
    return problems
