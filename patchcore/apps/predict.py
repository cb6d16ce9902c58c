"""`patchcore predict`: score new images with a trained model (memory bank + its settings)."""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from patchcore.config import Params
from patchcore.core import devices
from patchcore.core.scoring import reweighting
from patchcore.datasets.images import load_rgb, prepared, readable
from patchcore.datasets.layout import check_regular, is_image_file
from patchcore.engines import ray_pool as engines
from patchcore.engines import settings as engine_settings
from patchcore.engines.predict_worker import PredictWorker
from patchcore.engines.settings import EngineSettings
from patchcore.errors import UsageError
from patchcore.model.loaded import OnnxModel, batch_of, check_weights, decided
from patchcore.store import decisions, figures
from patchcore.store.atomic import atomic_dir, atomic_path
from patchcore.store.model_folder import ModelCard, load_model
from patchcore.store.output_set import output_set

BATCH = 8
T = TypeVar("T")  # what _decoded makes of each image


def collect_images(items: list[Path]) -> list[Path]:
    found: list[Path] = []
    for item in items:
        if item.is_dir():
            found.extend(sorted(p for p in item.rglob("*") if is_image_file(p)))
        else:
            found.append(item)  # named explicitly: report it if it cannot be read
    return found


def settings_note(card: ModelCard, model_dir: Path, params: Params | None) -> str:
    """Which settings predict used (always the model folder's), and how params.yaml's differ, if it does."""
    b = card.backbone
    line = f"settings: the model folder's own ({model_dir}/model.json): backbone {b.name} ({b.arch}, resize {b.resize}, crop {b.crop}), aggregation {card.aggregation.model_dump()}"
    if params is None or b.name not in params.backbones:
        return line
    made, now = [(b, params.backbones[b.name]), (card.aggregation, params.aggregation)], []
    for a, c in made:
        now += [f"{k} {getattr(c, k)!r}" for k in type(a).model_fields if getattr(a, k) != getattr(c, k)]
    return line + (f"; params.yaml differs ({', '.join(now)}) and is not used" if now else "")


def _decoded(
    images: list[Path], prepare: Callable[[Image.Image, Path], T], failures: list[str]
) -> Iterator[list[tuple[Path, T, tuple[int, int]]]]:
    """(path, prepare(image, path), original size) of each readable image, BATCH at a time (memory does not grow
    with their number); unreadable files and images too large for the geometry are reported in ``failures`` and
    skipped."""
    for first in range(0, len(images), BATCH):
        group = []
        for path in images[first : first + BATCH]:
            try:
                with readable(path, "skipped"):  # one bad file must not stop the others
                    check_regular(path, "skipped")
                    image = load_rgb(path)
                    group.append((path, prepare(image, path), image.size))
            except UsageError as exc:
                failures.append(f"{exc}; skipped" if not str(exc).endswith("skipped") else str(exc))
        if group:
            yield group


def _groups(images: list[Path], settings, decoded: deque, failures: list[str]) -> Iterator[tuple]:
    """(uint8 network inputs, each image's first input) BATCH images at a time; each group's paths, Prepared and
    sizes are appended to ``decoded``."""
    for group in _decoded(images, lambda image, path: prepared(settings, image, path), failures):
        decoded.append(group)
        yield batch_of([item for _, item, _ in group])


PICTURES = ("heatmaps", "masks", "maps")  # the folders of one run under --out, swapped in whole when it ends


def _record(
    path: Path, name: str, result: tuple[dict, np.ndarray, np.ndarray | None], out: Path, write: dict, maps: str
) -> dict:
    """One image's JSON line naming its files under ``out``; its mask (and with ``maps``, its raw map) at the
    original size are written into ``write``, the run's temporary folders."""
    entry, omap, mask = result
    record = {"image": str(path), **entry, "heatmap": str(out / "heatmaps" / f"{name}.png")}
    if mask is not None:
        record["mask"] = str(out / "masks" / f"{name}.png")
        decisions.mask_png(write["masks"] / f"{name}.png", mask)
    if maps != "none":
        record["map"] = str(out / "maps" / f"{name}.{maps}")
        decisions.raw_map(write["maps"] / f"{name}.{maps}", omap, maps)
    return record


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One predict at a time per --out folder: a second one would overwrite the first's pictures."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder; name a folder for predictions.jsonl and the pictures")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".predict.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"--out {out}: another patchcore predict is writing there; wait for it to end or choose another --out"
            ) from None
        yield


def run(
    model_dir: Path,
    items: list[Path],
    out_dir: Path,
    device_name: str = "auto",
    engine: EngineSettings | None = None,
    maps: str = "none",
) -> tuple[list[dict], list[str], ModelCard]:
    """Score ``items`` with the model folder's own settings (params.yaml plays no part); also return that model card.

    predictions.jsonl, heatmaps/, masks/ and maps/ are one output set (store.output_set): they
    are replaced together when the run ends, so every line points at this run's pictures.
    """
    devices.resolve(device_name, "--device")  # a GPU asked for where there is none fails before any work
    card, bank = load_model(model_dir)
    settings = card.backbone
    images = collect_images(items)
    if not images:
        raise UsageError(f"no images found in {', '.join(map(str, items))}")
    out = Path(out_dir)
    args = PredictWorker.arguments(card, bank, device_name, torch.get_num_threads())
    staged = output_set([out / "predictions.jsonl"], [out / name for name in PICTURES])
    with (
        _exclusive(out),
        staged,
        contextlib.ExitStack() as folders,
        engines.pool(PredictWorker, args, engine or EngineSettings()) as scorer,
    ):
        write = {name: folders.enter_context(atomic_dir(out / name)) for name in PICTURES}
        weights, device = scorer.first(PredictWorker.identity)
        check_weights(card, weights)
        failures: list[str] = []
        decoded: deque = deque()  # the groups sent and not yet scored: their paths, pictures and original sizes
        # a card's b beyond its bank: Eq. 7 off, as evaluate does
        b = reweighting(card.reweight_neighbours, len(bank))[0]
        shards = (
            (pixels, starts, b, settings.crop, card.blur_sigma)
            for pixels, starts in _groups(images, settings, decoded, failures)
        )
        records: list[dict] = []
        for scores, amaps in scorer.map(PredictWorker.predict, shards):
            first = 0
            for (path, item, size), score in zip(decoded.popleft(), scores):
                views, first = amaps[first : first + len(item.pixels)], first + len(item.pixels)
                name = f"{len(records):05d}_{path.stem}"
                result = decided(score, views, item.boxes, size, card)
                record = _record(path, name, result, out, write, maps)
                record.update({"model": str(model_dir), "weights": card.weights, "device": device})
                heat = result.omap if settings.multi_view else views[0]  # on the image itself, or the network's view
                figures.save_overlay(write["heatmaps"] / f"{name}.png", item.picture, heat, card.heat_scale)
                records.append(record)
        with atomic_path(out / "predictions.jsonl", ".jsonl") as tmp:
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return records, failures, card


def run_onnx(model: Path, items: list[Path], out_dir: Path, maps: str = "none") -> tuple[list[dict], list[str], str]:
    """predict through an exported file and the copyable runtime (onnxruntime): the same records, heatmaps and masks."""
    model = Path(model)
    path = model / "model.onnx" if model.is_dir() else model
    loaded = OnnxModel(path, torch.get_num_threads())
    inspector = loaded.inspector
    images = collect_images(items)
    if not images:
        raise UsageError(f"no images found in {', '.join(map(str, items))}")
    out = Path(out_dir)
    staged = output_set([out / "predictions.jsonl"], [out / name for name in PICTURES])
    records: list[dict] = []
    failures: list[str] = []
    with _exclusive(out), staged, contextlib.ExitStack() as folders:
        write = {name: folders.enter_context(atomic_dir(out / name)) for name in PICTURES}
        for group in _decoded(images, lambda image, _: image, failures):
            for (image, _, _), scored in zip(group, loaded.score([picture for _, picture, _ in group])):
                name = f"{len(records):05d}_{image.stem}"
                record = _record(image, name, (scored.entry, scored.omap, scored.mask), out, write, maps)
                record.update({"model": str(path), "weights": inspector.meta["weights"], "device": "onnxruntime (CPU)"})
                figures.save_overlay(write["heatmaps"] / f"{name}.png", scored.picture, scored.amap, loaded.heat_scale)
                records.append(record)
        with atomic_path(out / "predictions.jsonl", ".jsonl") as tmp:
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    m = inspector.meta
    return (
        records,
        failures,
        f"settings: the exported file's own ({path}): {m['dataset']}/{m['category']}, backbone {m['backbone']} ({m['weights']}), input {m['input_size']} px",
    )


def main(
    model_dir: Path,
    items: list[Path],
    out_dir: Path,
    params: Params | None,
    device: str = "auto",
    maps: str = "none",
    runtime: str = "torch",
) -> tuple[list[str], list[str], str]:
    if runtime == "onnx":
        records, failures, note = run_onnx(model_dir, items, out_dir, maps)
        return [json.dumps(r, sort_keys=True) for r in records], failures, note
    records, failures, card = run(model_dir, items, out_dir, device, engine_settings.from_env(), maps)
    note = settings_note(card, model_dir, params)
    return [json.dumps(r, sort_keys=True) for r in records], failures, note
