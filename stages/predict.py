"""`patchcore predict`: score new images with a trained model (memory bank + its settings)."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel

from .config import Params
from .core import devices
from .datasets.images import image_transform, load_rgb, network_view
from .datasets.layout import is_image_file
from .engines import ray_pool as engines
from .engines import settings as engine_settings
from .engines.feature_workers import PredictWorker
from .engines.settings import EngineSettings
from .errors import UsageError
from .store import figures
from .store.atomic import atomic_path
from .store.model_folder import ModelCard, ModelFolder, compare, fingerprint

BATCH = 8


def load_model(model_dir: Path) -> tuple[ModelCard, np.ndarray]:
    """The model card and the bank, refused unless both describe the same features."""
    folder = ModelFolder(Path(model_dir))
    card = folder.read_card()
    settings = card.backbone
    described = fingerprint(
        settings,
        card.weights,
        card.aggregation.describe(settings.layer_dim or settings.target_dim),
        card.fingerprint.get("grid", (0, 0)),
        card.precision,
    )
    compare(described, f"{folder.card} (its settings)", card.fingerprint, f"{folder.card} (its fingerprint)")
    compare(card.fingerprint, str(folder.card), folder.features_fingerprint(folder.bank), str(folder.bank))
    return card, folder.read_bank(settings.target_dim)


def collect_images(items: list[Path]) -> list[Path]:
    found: list[Path] = []
    for item in items:
        if item.is_dir():
            found.extend(sorted(p for p in item.rglob("*") if is_image_file(p)))
        else:
            found.append(item)  # named explicitly: report it if it cannot be read
    return found


def check_settings(what: str, made: BaseModel, current: BaseModel) -> None:
    """A model must be used with the settings it was built with (its backbone's, its aggregation's)."""
    if current == made:
        return
    changed = [f"{k}: {getattr(made, k)!r} -> {getattr(current, k)!r}" for k in type(made).model_fields if getattr(made, k) != getattr(current, k)]
    raise UsageError(
        f"the model was made with other settings of {what} than params.yaml now holds ({'; '.join(changed)}); "
        "run 'dvc repro' to rebuild it, or predict with the params it was made with"
    )


def _groups(images: list[Path], settings, decoded: deque, failures: list[str]) -> Iterator[torch.Tensor]:
    """Normalised images, BATCH at a time (memory does not grow with their number); unreadable files are
    reported in ``failures`` and skipped; each group's paths and pictures are appended to ``decoded``."""
    transform, view = image_transform(settings), network_view(settings)
    for first in range(0, len(images), BATCH):
        group = []
        for path in images[first : first + BATCH]:
            try:
                image = load_rgb(path)
                group.append((path, transform(image), view(image)))
            except Exception as exc:  # one bad file must not stop the others
                failures.append(f"{path}: not a readable image ({exc.__class__.__name__}); skipped")
        if group:
            decoded.append([(path, picture) for path, _, picture in group])
            yield torch.stack([x for _, x, _ in group])


def _record(path: Path, score: float, heatmap: Path, card: ModelCard, model_dir: Path, device: str) -> dict:
    threshold = card.threshold
    return {
        "image": str(path),
        "score": round(float(score), 6),
        "normalised_score": None if threshold is None else round(float(score) / threshold, 6),
        "verdict": None if threshold is None else ("anomalous" if score >= threshold else "good"),
        "heatmap": str(heatmap),
        "model": str(model_dir),
        "weights": card.weights,
        "device": device,
    }


def run(
    model_dir: Path, items: list[Path], out_dir: Path, params: Params | None, device_name: str = "auto", engine: EngineSettings | None = None
) -> tuple[list[dict], list[str]]:
    """Score ``items``; ``params`` (params.yaml, if there is one) must agree with the model's backbone."""
    devices.resolve(device_name, "--device")  # a GPU asked for where there is none fails before any work
    card, bank = load_model(model_dir)
    settings = card.backbone
    if params is not None and settings.name in params.backbones:
        check_settings(f"backbone {settings.name}", settings, params.backbones[settings.name])
        check_settings("aggregation", card.aggregation, params.aggregation)
    images = collect_images(items)
    if not images:
        raise UsageError(f"no images found in {', '.join(map(str, items))}")
    args = (settings, card.aggregation, card.precision, card.channels_last, bank, card.approximate_above, device_name, torch.get_num_threads())
    with engines.pool(PredictWorker, args, engine or EngineSettings()) as scorer:
        weights, device = scorer.first("identity")
        if weights != card.weights:
            raise UsageError(
                f"the model was made with weights '{card.weights}' but this machine now loads '{weights}'; use the same weights or rebuild the model"
            )
        failures: list[str] = []
        decoded: deque = deque()  # the groups sent and not yet scored: their paths and pictures
        shards = ((stack, card.reweight_neighbours, settings.crop, card.blur_sigma) for stack in _groups(images, settings, decoded, failures))
        records: list[dict] = []
        heat_dir = Path(out_dir) / "heatmaps"
        for scores, maps in scorer.map("predict", shards):
            for (path, picture), score, amap in zip(decoded.popleft(), scores, maps):
                heatmap = heat_dir / f"{len(records):05d}_{path.stem}.png"
                figures.save_overlay(heatmap, picture, amap, card.heat_scale)
                records.append(_record(path, score, heatmap, card, model_dir, device))
    with atomic_path(Path(out_dir) / "predictions.jsonl", ".jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return records, failures


def main(model_dir: Path, items: list[Path], out_dir: Path, params: Params | None, device: str = "auto") -> tuple[list[str], list[str]]:
    records, failures = run(model_dir, items, out_dir, params, device, engine_settings.from_env())
    return [json.dumps(r, sort_keys=True) for r in records], failures
