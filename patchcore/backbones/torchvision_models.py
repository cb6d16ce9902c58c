"""torchvision ``wide_resnet50_2`` with ``IMAGENET1K_V1``, the weights of the PatchCore paper."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import torch
from torch import nn

from patchcore.backbones.base import Adapter, LoadedBackbone, WeightsStatus, strict_load
from patchcore.backbones.network import reachable, unavailable
from patchcore.config import BackboneSettings

TORCHVISION_WEIGHTS = {"wide_resnet50_2": "Wide_ResNet50_2_Weights.IMAGENET1K_V1"}


def _weights_enum(name: str):
    import torchvision

    enum_name, _, member = TORCHVISION_WEIGHTS[name].partition(".")
    return getattr(getattr(torchvision.models, enum_name), member)


class Torchvision(Adapter):
    library = "torchvision"
    models = tuple(TORCHVISION_WEIGHTS)

    def architecture(self, name: str, device: str = "cpu") -> nn.Module:
        import torchvision

        with torch.device(device):
            return getattr(torchvision.models, name)(weights=None)

    def pretrained_status(self, name: str) -> WeightsStatus:
        url = _weights_enum(name).url
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urllib.parse.urlsplit(url).path).name
        return WeightsStatus(f"torchvision {TORCHVISION_WEIGHTS[name]}", path.is_file(), str(path))

    def pretrained(self, settings: BackboneSettings, name: str, status: WeightsStatus) -> LoadedBackbone:
        weights = _weights_enum(name)
        if not status.available and not reachable(weights.url):
            raise unavailable(settings, status, weights.url)
        # check_hash: torchvision file names carry a sha256 prefix of their content
        state = torch.hub.load_state_dict_from_url(weights.url, map_location="cpu", progress=True, check_hash=True)
        model = self.architecture(name)
        strict_load(settings, model, state)
        return LoadedBackbone(model, f"ImageNet-1k, torchvision {TORCHVISION_WEIGHTS[name]} ({Path(weights.url).name})")
