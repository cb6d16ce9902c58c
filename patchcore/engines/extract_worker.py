"""The Ray actor (or, on the local engine, the object) that holds extract's backbone: features, one shard at a time.

Each actor builds its model (or memory bank) once. torch's CPU convolutions split their sums
by thread, so an actor runs with the driver's thread count: the features are then the bytes
the local engine computes on the same machine.
"""

from __future__ import annotations

import numpy as np
import torch

from patchcore.backbones import LayerTap, PatchFeatures, build, place, stream
from patchcore.config import AggregationSettings, BackboneSettings, ExtractSettings
from patchcore.core import devices


def backbone_features(
    settings: BackboneSettings,
    aggregation: AggregationSettings,
    precision: str,
    channels_last: bool,
    device: torch.device,
):
    loaded = build(settings)
    place(loaded.model, device, channels_last)
    return PatchFeatures(LayerTap(loaded.model, settings.layers), settings, aggregation, precision), loaded.weights


class ExtractWorker:
    def __init__(
        self, settings: BackboneSettings, aggregation: AggregationSettings, extract: ExtractSettings, threads: int
    ):
        torch.set_num_threads(threads)
        self.device = devices.resolve(extract.device, "extract.device")
        self.extract = extract.model_copy(update={"num_workers": 0})  # the actor is the worker process
        self.features, _ = backbone_features(
            settings, aggregation, extract.precision, extract.channels_last, self.device
        )

    def device_name(self) -> str:
        return devices.describe(self.device)

    def features_of(self, images: list[bytes], names: list[str]) -> tuple[np.ndarray, stream.Started]:
        """(V, H, W, D) patch features of the encoded images' V network inputs (``names``: their files), in order, and
        the images' sizes and boxes."""
        with torch.inference_mode():
            parts = list(stream.host_batches(images, self.features, self.device, self.extract, names))
        return np.concatenate([p.numpy() for p, _ in parts]), stream.Started(
            torch.cat([s.sizes for _, s in parts]), np.concatenate([s.boxes for _, s in parts])
        )
