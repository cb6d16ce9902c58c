"""Images -> patch features: the tapped layers of a backbone, aggregated as the settings say.

The one definition shared by extract and predict, so a model scores new images exactly as
its memory bank was built.
"""

from __future__ import annotations

import json

import torch

from ..config import AggregationSettings, BackboneSettings
from ..core.features import aggregate
from .tap import LayerTap


class PatchFeatures:
    def __init__(self, tap: LayerTap, settings: BackboneSettings, aggregation: AggregationSettings):
        self.tap, self.settings, self.aggregation = tap, settings, aggregation

    @property
    def layer_dim(self) -> int:
        return self.settings.layer_dim or self.settings.target_dim

    def describe(self) -> dict:
        return self.aggregation.describe(self.layer_dim)

    def attribute(self) -> str:
        """The aggregation as one deterministic string, for HDF5 attributes."""
        return json.dumps(self.describe(), sort_keys=True)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, crop, crop) normalised images -> (B, H, W, target_dim) patch features."""
        a = self.aggregation
        return aggregate(self.tap(images), self.settings.target_dim, self.layer_dim, a.patchsize, a.border, a.layer_weighting)
