"""`patchcore predict`: score new images with a trained model (memory bank + its settings)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import torch

from . import figures
from .atomic import atomic_path
from .backbones import LayerTap, build
from .dataset import is_image_file
from .errors import UsageError
from .features import aggregate
from .images import image_transform, load_rgb, network_view
from .params import BackboneSettings, backbone_settings
from .scoring import NearestBank, score_images

BATCH = 8


def load_model(model_dir: Path) -> tuple[dict, BackboneSettings, NearestBank]:
    model_dir = Path(model_dir)
    meta_path, bank_path = model_dir / "model.json", model_dir / "bank.h5"
    for path in (meta_path, bank_path):
        if not path.is_file():
            raise UsageError(f"{path} not found; MODEL is a folder written by 'dvc repro', e.g. features/<dataset>/<category>/<backbone>")
    try:
        meta = json.loads(meta_path.read_text())
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["backbone"].items()}
        settings = BackboneSettings(**fields)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(f"{meta_path}: corrupted model file ({exc.__class__.__name__}); rerun 'dvc repro' to rebuild it") from None
    try:
        with h5py.File(bank_path, "r") as f:
            bank = f["bank"][()]
    except (OSError, KeyError) as exc:
        raise UsageError(f"{bank_path}: corrupted memory bank ({exc.__class__.__name__}); rerun 'dvc repro' to rebuild it") from None
    if bank.ndim != 2 or bank.shape[1] != settings.target_dim:
        raise UsageError(f"{bank_path}: bank of {bank.shape} does not fit the model's {settings.target_dim}-dim features; rerun 'dvc repro'")
    return meta, settings, NearestBank(bank, meta.get("approximate_above", 0))


def collect_images(items: list[Path]) -> list[Path]:
    found: list[Path] = []
    for item in items:
        if item.is_dir():
            found.extend(sorted(p for p in item.rglob("*") if is_image_file(p)))
        else:
            found.append(item)  # named explicitly: report it if it cannot be read
    return found


def check_settings(model_settings: BackboneSettings, current: BackboneSettings | None) -> None:
    """A model must be used with the backbone settings it was built with."""
    if current is None or current == model_settings:
        return
    changed = [f"{k}: {getattr(model_settings, k)!r} -> {getattr(current, k)!r}" for k in model_settings.__dataclass_fields__ if getattr(model_settings, k) != getattr(current, k)]
    raise UsageError(
        f"the model was made with other settings of backbone {model_settings.name} than params.yaml now holds ({'; '.join(changed)}); "
        "run 'dvc repro' to rebuild it, or predict with the params it was made with"
    )


def run(model_dir: Path, items: list[Path], out_dir: Path, params: dict | None) -> tuple[list[dict], list[str]]:
    """Score ``items``; ``params`` (params.yaml, if there is one) must agree with the model's backbone."""
    meta, settings, nearest = load_model(model_dir)
    if params is not None and settings.name in params.get("backbones", {}):
        check_settings(settings, backbone_settings(params, settings.name))
    images = collect_images(items)
    if not images:
        raise UsageError(f"no images found in {', '.join(map(str, items))}")
    loaded = build(settings)
    if loaded.weights != meta["weights"]:
        raise UsageError(f"the model was made with weights '{meta['weights']}' but this machine now loads '{loaded.weights}'; use the same weights or rebuild the model")
    fmt = torch.channels_last if meta.get("channels_last") else torch.contiguous_format
    loaded.model.to(memory_format=fmt)
    tap, transform, view = LayerTap(loaded.model, settings.layers), image_transform(settings), network_view(settings)
    threshold = meta["threshold"]
    records, failures = [], []
    heat_dir = Path(out_dir) / "heatmaps"
    for first in range(0, len(images), BATCH):
        # a batch at a time: memory does not grow with the number of images
        group = []
        for path in images[first : first + BATCH]:
            try:
                image = load_rgb(path)
                group.append((path, transform(image), view(image)))
            except Exception as exc:  # one bad file must not stop the others
                failures.append(f"{path}: not a readable image ({exc.__class__.__name__}); skipped")
        if not group:
            continue
        with torch.inference_mode():
            patches = aggregate(tap(torch.stack([x for _, x, _ in group]).contiguous(memory_format=fmt)), settings.target_dim)
        grid = (patches.shape[1], patches.shape[2])
        scores, maps = score_images(nearest, patches.reshape(-1, settings.target_dim).numpy(), grid, meta["reweight_neighbours"], settings.crop, meta["blur_sigma"])
        for (path, _, picture), score, amap in zip(group, scores, maps):
            heatmap = heat_dir / f"{len(records):05d}_{path.stem}.png"
            figures.save_overlay(heatmap, picture, amap, meta["heat_scale"])
            records.append({
                "image": str(path),
                "score": round(float(score), 6),
                "normalised_score": None if threshold is None else round(float(score) / threshold, 6),
                "verdict": None if threshold is None else ("anomalous" if score >= threshold else "good"),
                "heatmap": str(heatmap),
                "model": str(model_dir),
                "weights": meta["weights"],
            })
    with atomic_path(Path(out_dir) / "predictions.jsonl", ".jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return records, failures
