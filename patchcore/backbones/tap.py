"""Running a network only as far as the layers PatchCore taps."""

from __future__ import annotations

import torch
from torch import nn

from patchcore.errors import UsageError


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
                raise UsageError(
                    f"unknown layer '{layer}'; module names look like {', '.join(top[:8])}, ... (dotted, e.g. blocks.2)"
                )
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
