"""A model held in memory to score images as they come: a model folder in torch, or an exported file.

predict walks a list of files; the service gets one image per request and batches them. Both
decide an image the same way (``decided``), so a served image gets predict's record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from patchcore.core import devices
from patchcore.core.scoring import reweighting
from patchcore.datasets.images import Prepared, prepared
from patchcore.engines.predict_worker import PredictWorker
from patchcore.errors import UsageError, optional
from patchcore.runtime import patchcore_onnx
from patchcore.store.model_folder import ModelCard, load_model


def decided(score: float, maps: np.ndarray, boxes, size: tuple[int, int], card: ModelCard) -> patchcore_onnx.Decision:
    """One image's fields (score, verdict, regions, normalised score, threshold, size), its map at the original size and
    its mask: the copyable runtime's record of its inputs' ``maps`` and ``boxes``, with the model card's thresholds."""
    meta = {"threshold": card.threshold, "pixel_threshold": card.pixel_threshold, "score_range": card.score_range}
    return patchcore_onnx.record(score, maps, boxes, size, meta)


def batch_of(items: list[Prepared]) -> tuple[torch.Tensor, np.ndarray | None]:
    """Prepared images as one (V, S, S, 3) uint8 batch, and each image's first input (None: one input each)."""
    counts = [len(p.pixels) for p in items]
    starts = None if all(c == 1 for c in counts) else np.concatenate([[0], np.cumsum(counts)])
    return torch.from_numpy(np.concatenate([p.pixels for p in items])), starts


def check_weights(card: ModelCard, weights: str) -> None:
    if weights != card.weights:
        raise UsageError(
            f"the model was made with weights '{card.weights}' but this machine now loads '{weights}'; use the same weights or rebuild the model"
        )


@dataclass
class Scored:
    """One image's result: predict's fields, its map at the original size, its mask, and the picture with its map for
    the heatmap."""

    entry: dict
    omap: np.ndarray
    mask: np.ndarray | None
    picture: Image.Image  # the image as the network saw it (resized and cropped; whole and tiles: the image)
    amap: np.ndarray  # the map on that picture
    window: tuple[float, float, float, float]  # the picture's extent (x0, y0, x1, y1) in the image's own pixels


def window_of(box, size: tuple[int, int], picture: Image.Image) -> tuple[float, float, float, float]:
    """Where ``picture`` lies in the (width, height) image: all of it, or the crop that ``box`` (the image in the
    crop's pixels) describes, so that regions (in the image's pixels) can be drawn over the picture."""
    if picture.size == size:
        return 0.0, 0.0, float(size[0]), float(size[1])
    x0, y0, x1, y1 = box
    sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
    return -x0 * sx, -y0 * sy, (picture.width - x0) * sx, (picture.height - y0) * sy


class Model(Protocol):
    """What predict and the service hold: a model folder in torch (TorchModel) or an exported file (OnnxModel)."""

    runtime: str  # "torch" or "onnx"
    heat_scale: float  # the map value drawn at full heat in the heatmaps

    def describe(self) -> dict:
        """The model as GET /v1/model shows it: data set, category, backbone, weights, thresholds, input size."""
        ...

    def score(self, images: list[Image.Image]) -> list[Scored]:
        """RGB images of any sizes -> one result each, in order, in one forward pass."""
        ...


class TorchModel:
    """A model folder (features/<dataset>/<category>/<backbone>/) scored in this process."""

    runtime = "torch"

    def __init__(self, model_dir: Path, device_name: str = "auto", threads: int = 0):
        devices.resolve(device_name, "--device")  # a GPU asked for where there is none fails before the backbone loads
        self.card, bank = load_model(model_dir)
        args = PredictWorker.arguments(self.card, bank, device_name, threads or torch.get_num_threads())
        self.worker = PredictWorker(*args)
        weights, self.device = self.worker.identity()
        check_weights(self.card, weights)
        c = self.card
        self.reweight = reweighting(c.reweight_neighbours, len(bank))[0]  # beyond the bank: Eq. 7 off, as evaluate does
        self.heat_scale = c.heat_scale
        self.bank_rows = len(bank)

    def describe(self) -> dict:
        c = self.card
        return {
            "runtime": self.runtime,
            "device": self.device,
            "dataset": c.dataset,
            "category": c.category,
            "backbone": c.backbone.name,
            "arch": c.backbone.arch,
            "weights": c.weights,
            "data": c.data,
            "threshold": c.threshold,
            "threshold_method": c.threshold_method,
            "pixel_threshold": c.pixel_threshold,
            "score_range": c.score_range,
            "input_size": c.backbone.crop,
            "bank_rows": self.bank_rows,
        }

    def score(self, images: list[Image.Image]) -> list[Scored]:
        """RGB images (any sizes) -> one result each, in one forward pass."""
        items = [prepared(self.card.backbone, image, "the image") for image in images]
        pixels, starts = batch_of(items)
        c = self.card
        scores, maps = self.worker.predict(pixels, starts, self.reweight, c.backbone.crop, c.blur_sigma)
        out, first = [], 0
        for image, item, score in zip(images, items, scores):
            views, first = maps[first : first + len(item.pixels)], first + len(item.pixels)
            entry, omap, mask = decided(float(score), views, item.boxes, image.size, c)
            amap = omap if c.backbone.multi_view else views[0]
            window = window_of(item.boxes[0], image.size, item.picture)
            out.append(Scored(entry, omap, mask, item.picture, amap, window))
        return out


class OnnxModel:
    """A model.onnx written by 'patchcore export', run by onnxruntime through the copyable runtime."""

    runtime = "onnx"

    def __init__(self, path: Path, threads: int = 0):
        optional("onnxruntime", "--runtime onnx", "export")
        if not path.is_file():
            raise UsageError(
                f"{path} not found; --runtime onnx takes a model.onnx written by 'patchcore export' (or its folder)"
            )
        try:
            self.inspector = patchcore_onnx.Inspector(path, threads=threads or torch.get_num_threads())
        except (
            ValueError
        ) as exc:  # the runtime's own checks of the metadata against the graph: their words name the field
            raise UsageError(f"{path}: {exc}") from None
        except Exception as exc:  # onnxruntime raises its own types for a damaged file
            raise UsageError(
                f"{path}: not a model file written by 'patchcore export' ({exc.__class__.__name__}: {str(exc)[:200]}); export it again"
            ) from None
        self.heat_scale = float(self.inspector.meta["heat_scale"])

    def describe(self) -> dict:
        m = self.inspector.meta
        keys = (
            "dataset",
            "category",
            "backbone",
            "arch",
            "weights",
            "threshold",
            "threshold_method",
            "pixel_threshold",
            "score_range",
            "input_size",
            "bank_rows",
        )
        return {
            "runtime": self.runtime,
            "device": "onnxruntime (CPU)",
            **{k: m.get(k) for k in keys},
            "data": m.get("data", {}),
        }

    def score(self, images: list[Image.Image]) -> list[Scored]:
        inputs = [self.inspector.inputs(image) for image in images]
        scores, maps = self.inspector.score(np.concatenate([p for p, _ in inputs]), [len(b) for _, b in inputs])
        out, first = [], 0
        one = patchcore_onnx.geometry_of(self.inspector.meta)["name"] == "resize_crop"
        for image, (pixels, boxes), score in zip(images, inputs, scores):
            views, first = maps[first : first + len(boxes)], first + len(boxes)
            entry, omap, mask = self.inspector.decide(float(score), views, boxes, image.size)
            picture, amap = (Image.fromarray(pixels[0]), views[0]) if one else (image, omap)
            out.append(Scored(entry, omap, mask, picture, amap, window_of(boxes[0], image.size, picture)))
        return out


def load(model: Path, runtime: str, device_name: str = "auto", threads: int = 0) -> Model:
    """The model a service holds: a model folder (torch), or model.onnx or its folder (onnx)."""
    if runtime == "onnx":
        return OnnxModel(model / "model.onnx" if model.is_dir() else model, threads)
    if runtime != "torch":
        raise UsageError(f"--runtime must be torch or onnx, got {runtime!r}")
    return TorchModel(model, device_name, threads)
