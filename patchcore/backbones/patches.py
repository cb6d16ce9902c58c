"""Images -> patch features: the tapped layers of a backbone, aggregated as the settings say.

The one definition shared by extract and predict, so a model scores new images exactly as
its memory bank was built.
"""

from __future__ import annotations

import json

import torch

from patchcore.backbones.tap import LayerTap
from patchcore.config import AggregationSettings, BackboneSettings
from patchcore.core.devices import PRECISIONS
from patchcore.core.features import aggregate


class PatchFeatures:
    """``precision`` other than float32 runs the network under autocast; the tapped maps are
    then cast back and aggregated in float32, so only the convolutions see the lower precision."""

    def __init__(
        self, tap: LayerTap, settings: BackboneSettings, aggregation: AggregationSettings, precision: str = "float32"
    ):
        self.tap, self.settings, self.aggregation = tap, settings, aggregation
        self.precision = precision

    @property
    def layer_dim(self) -> int:
        return self.settings.feature_dim

    def describe(self) -> dict:
        return self.aggregation.describe(self.layer_dim)

    def attribute(self) -> str:
        """The aggregation as one deterministic string, for HDF5 attributes."""
        return json.dumps(self.describe(), sort_keys=True)

    def maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The tapped layers' float32 maps, the network run at this precision."""
        if self.precision == "float32":
            return self.tap(images)
        with torch.autocast(images.device.type, dtype=PRECISIONS[self.precision]):
            return [m.float() for m in self.tap(images)]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, crop, crop) normalised images -> (B, H, W, target_dim) patch features."""
        a = self.aggregation
        return aggregate(
            self.maps(images), self.settings.target_dim, self.layer_dim, a.patchsize, a.border, a.layer_weighting
        )


def place(model: torch.nn.Module, device: torch.device, channels_last: bool) -> None:
    """Move the network to where it computes, in the memory format its inputs will have."""
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
