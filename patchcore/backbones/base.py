"""What every backbone adapter provides, and the records they hand back."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from patchcore.config import BackboneSettings
from patchcore.errors import UsageError


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


def load_state_file(settings: BackboneSettings, path: Path) -> dict[str, torch.Tensor]:
    """A user's weights file as a state dict; weights_only blocks code hidden in a pickle."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for files that are not state dicts
        first = (str(exc).splitlines() or [exc.__class__.__name__])[0][:160]
        raise UsageError(
            f"backbones.{settings.name}.weights: {path} is not a PyTorch state dict ({exc.__class__.__name__}: {first}); "
            f"use the weights file made for {settings.arch}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(
            f"backbones.{settings.name}.weights: {path} is not a state dict of tensors; use the weights file made for {settings.arch}"
        )
    return state


def strict_load(settings: BackboneSettings, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Strict: a missing or unexpected key means the weights are not what we think they are."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(
            f"backbones.{settings.name}.weights: {settings.weights} does not fit {settings.arch} ({first}); use the file made for it"
        ) from None


class Adapter(abc.ABC):
    """One model library: which models it offers, where their weights live, how to build them."""

    library: str
    models: tuple[str, ...]

    @abc.abstractmethod
    def architecture(self, name: str, device: str = "cpu") -> nn.Module:
        """The image network with untrained weights (on ``meta`` it costs no memory or compute)."""

    @abc.abstractmethod
    def pretrained_status(self, name: str) -> WeightsStatus:
        """Where the pretrained weights come from and whether this machine has them."""

    @abc.abstractmethod
    def pretrained(self, settings: BackboneSettings, name: str, status: WeightsStatus) -> LoadedBackbone:
        """The network with its published weights, fetched if the machine is online."""

    def from_file(self, settings: BackboneSettings, name: str, path: Path) -> LoadedBackbone:
        """The network with a user's weights file."""
        model = self.architecture(name)
        strict_load(settings, model, load_state_file(settings, path))
        return LoadedBackbone(model, f"file {settings.weights}")
