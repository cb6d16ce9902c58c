"""A Ray actor (or, on the local engine, an object in this process) holding the memory bank.

The bank reaches every actor once, through Ray's object store; each shard of patches is then
scored with the same code the local engine runs (core.scoring), so scores and maps are the
same bytes on both engines.
"""

from __future__ import annotations

import numpy as np

from patchcore.core import devices
from patchcore.core.scoring import NearestBank, score_images


class ScoreWorker:
    """Scores shards of patches against a memory bank it receives once (through the object store)."""

    def __init__(self, bank: np.ndarray, approximate_above: int, device_name: str, setting: str):
        self.device = devices.resolve(device_name, setting)
        self.nearest = NearestBank(bank, approximate_above, device=None if self.device.type == "cpu" else self.device)

    def score(
        self, patches: np.ndarray, grid: tuple[int, int], reweight: int, size: int, sigma: float, starts=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Image scores (n,) and the maps (V, size, size) of their V network inputs (``starts``: see score_images)."""
        return score_images(self.nearest, patches, grid, reweight, size, sigma, starts)

    def search(self) -> tuple[dict, int, str]:
        """How the bank is searched, its size, and the device."""
        return self.nearest.describe(), int(self.nearest.bank.shape[0]), devices.describe(self.device)

    def recall_at_1(self, queries: np.ndarray) -> float:
        return self.nearest.recall_at_1(queries)
