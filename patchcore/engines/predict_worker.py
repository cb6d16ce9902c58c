"""The Ray actor (or, on the local engine, the object) that holds predict's backbone and memory bank.

It runs with the driver's thread count, as the extract worker does, so its features are the bytes
the local engine computes on the same machine.
"""

from __future__ import annotations

import numpy as np
import torch

from patchcore.core import devices
from patchcore.core.scoring import score_images
from patchcore.datasets.images import normalised
from patchcore.engines.extract_worker import backbone_features
from patchcore.engines.score_worker import ScoreWorker
from patchcore.store.model_folder import ModelCard


class PredictWorker(ScoreWorker):
    """predict's features and scores of shards of already decoded, normalised images."""

    def __init__(
        self,
        settings,
        aggregation,
        precision: str,
        channels_last: bool,
        bank: np.ndarray,
        approximate_above: int,
        device_name: str,
        threads: int,
    ):
        torch.set_num_threads(threads)
        super().__init__(bank, approximate_above, device_name, "--device")
        self.channels_last = channels_last
        self.features, self.weights = backbone_features(settings, aggregation, precision, channels_last, self.device)

    @staticmethod
    def arguments(card: ModelCard, bank: np.ndarray, device_name: str, threads: int) -> tuple:
        """What builds a worker for a model folder's card and bank (a Ray actor receives them as they are)."""
        c = card
        return (
            c.backbone,
            c.aggregation,
            c.precision,
            c.channels_last,
            bank,
            c.approximate_above,
            device_name,
            threads,
        )

    def identity(self) -> tuple[str, str]:
        """The weights this worker loaded (they must be the model's) and its device."""
        return self.weights, devices.describe(self.device)

    def predict(
        self, pixels: torch.Tensor, starts: np.ndarray | None, reweight: int, size: int, sigma: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Image scores (n,) and the (V, size, size) maps of a batch of images' V network inputs, (V, S, S, 3) uint8;
        ``starts``: each image's first input and their count last (None: one input each)."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        with torch.inference_mode():
            images = normalised(pixels.to(self.device), self.features.settings)
            patches = self.features(images.contiguous(memory_format=fmt)).cpu()
        grid = (patches.shape[1], patches.shape[2])
        flat = patches.reshape(-1, patches.shape[-1]).numpy()
        return score_images(self.nearest, flat, grid, reweight, size, sigma, starts)
