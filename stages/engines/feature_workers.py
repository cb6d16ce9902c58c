"""Ray actors that hold a backbone: extract's and predict's features, one shard at a time.

Each actor builds its model (or memory bank) once. torch's CPU convolutions split their sums
by thread, so an actor runs with the driver's thread count: the features are then the bytes
the local engine computes on the same machine.
"""

from __future__ import annotations

import numpy as np
import torch

from ..backbones import LayerTap, PatchFeatures, build, place, stream
from ..config import AggregationSettings, BackboneSettings, ExtractSettings
from ..core import devices
from ..core.scoring import score_images
from .score_worker import ScoreWorker


def _features(settings: BackboneSettings, aggregation: AggregationSettings, precision: str, channels_last: bool, device: torch.device):
    loaded = build(settings)
    place(loaded.model, device, channels_last)
    return PatchFeatures(LayerTap(loaded.model, settings.layers), settings, aggregation, precision), loaded.weights


class ExtractWorker:
    def __init__(self, settings: BackboneSettings, aggregation: AggregationSettings, extract: ExtractSettings, threads: int):
        torch.set_num_threads(threads)
        self.device = devices.resolve(extract.device, "extract.device")
        self.extract = extract.model_copy(update={"num_workers": 0})  # the actor is the worker process
        self.features, _ = _features(settings, aggregation, extract.precision, extract.channels_last, self.device)

    def device_name(self) -> str:
        return devices.describe(self.device)

    def features_of(self, images: list[bytes], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(n, H, W, D) patch features and (n, 2) original sizes of the encoded images (``names``: their files), in order."""
        with torch.inference_mode():
            parts = list(stream.host_batches(images, self.features, self.device, self.extract, names))
        return np.concatenate([p.numpy() for p, _ in parts]), np.concatenate([hw.numpy() for _, hw in parts])


class PredictWorker(ScoreWorker):
    """predict's features and scores of shards of already decoded, normalised images."""

    def __init__(
        self, settings, aggregation, precision: str, channels_last: bool, bank: np.ndarray, approximate_above: int, device_name: str, threads: int
    ):
        torch.set_num_threads(threads)
        super().__init__(bank, approximate_above, device_name, "--device")
        self.channels_last = channels_last
        self.features, self.weights = _features(settings, aggregation, precision, channels_last, self.device)

    def identity(self) -> tuple[str, str]:
        """The weights this worker loaded (they must be the model's) and its device."""
        return self.weights, devices.describe(self.device)

    def predict(self, images: torch.Tensor, reweight: int, size: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """Image scores and anomaly maps of a batch of normalised images."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        with torch.inference_mode():
            patches = self.features(images.to(self.device).contiguous(memory_format=fmt)).cpu()
        grid = (patches.shape[1], patches.shape[2])
        return score_images(self.nearest, patches.reshape(-1, patches.shape[-1]).numpy(), grid, reweight, size, sigma)
