"""The backbones this project knows: one adapter per model library behind one interface.

Weights resolution order: an explicit file; the library's own cache; (at build time) a download.
Untrained weights are used only when params say ``weights: random``, and every output says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from patchcore.backbones.allocator import keep_freed_memory
from patchcore.backbones.base import Adapter, LoadedBackbone, WeightsStatus
from patchcore.backbones.open_clip_models import OpenClip
from patchcore.backbones.tap import LayerTap
from patchcore.backbones.timm_lite import TimmLite
from patchcore.backbones.torchvision_models import Torchvision
from patchcore.config import BackboneSettings
from patchcore.errors import UsageError

ADAPTERS: dict[str, Adapter] = {a.library: a for a in (TimmLite(), Torchvision(), OpenClip())}


def resolve(settings: BackboneSettings) -> tuple[Adapter, str]:
    """The adapter and model name of ``arch`` (``<library>/<model>``), or a one-line error listing the known ones."""
    library, _, name = settings.arch.partition("/")
    adapter = ADAPTERS.get(library)
    if adapter is None or name not in adapter.models:
        allowed = ", ".join(f"{a.library}/{n}" for a in ADAPTERS.values() for n in a.models)
        raise UsageError(f"backbones.{settings.name}.arch: unknown architecture '{settings.arch}'; allowed: {allowed}")
    return adapter, name


def weights_status(settings: BackboneSettings) -> WeightsStatus:
    adapter, name = resolve(settings)
    if settings.weights == "random":
        return WeightsStatus("random (explicit)", True, "")
    if settings.weights != "pretrained":
        path = Path(settings.weights)
        return WeightsStatus(f"file {path}", path.is_file(), str(path))
    return adapter.pretrained_status(name)


@dataclass(frozen=True)
class Geometry:
    channels: tuple[int, ...]  # per tapped layer
    strides: tuple[int, ...]  # input pixels per feature-map cell, per tapped layer
    grid: tuple[int, int]  # the patch grid (the first layer's map)


def geometry(settings: BackboneSettings) -> Geometry:
    """Shapes of the tapped layers at the configured input size, computed on the meta device (no weights)."""
    adapter, name = resolve(settings)
    tap = LayerTap(adapter.architecture(name, "meta").eval(), settings.layers)
    try:
        maps = tap(torch.zeros(1, 3, settings.crop, settings.crop, device="meta"))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(
            f"backbones.{settings.name}: the network cannot take {settings.crop} px inputs ({first}); change crop/resize"
        ) from None
    return Geometry(
        channels=tuple(int(m.shape[1]) for m in maps),
        strides=tuple(2 ** round(math.log2(settings.crop / m.shape[-1])) for m in maps),
        grid=(int(maps[0].shape[-2]), int(maps[0].shape[-1])),
    )


def build(settings: BackboneSettings) -> LoadedBackbone:
    """Create the network with its weights; raise UsageError (before any work) when they cannot be had.

    The process that builds a network runs it: its allocator is set for forward passes here.
    """
    adapter, name = resolve(settings)
    keep_freed_memory()
    if settings.weights == "random":
        # Untrained weights must still be the same in every run, or outputs would change bytes
        # each time; fork_rng keeps the caller's random state as it was.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            loaded = LoadedBackbone(adapter.architecture(name), "RANDOM initialisation (not pretrained)")
    elif settings.weights == "pretrained":
        loaded = adapter.pretrained(settings, name, adapter.pretrained_status(name))
    else:
        path = Path(settings.weights)
        if not path.is_file():
            raise UsageError(
                f"backbones.{settings.name}.weights: file {settings.weights} not found; use 'pretrained', 'random' or a path to a weights file"
            )
        loaded = adapter.from_file(settings, name, path)
    loaded.model.eval()
    return loaded
