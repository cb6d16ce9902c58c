"""The bare backbone, up to the tapped layers, exported alone to ONNX: what a file's time is compared with
(latency.py, tiled_export.py)."""

from __future__ import annotations

import warnings
from pathlib import Path


def export(tap, example, out: Path) -> Path:
    """Export ``tap`` (a LayerTap) traced on ``example`` (a float NCHW tensor) to ``out``: input ``x``, any batch."""
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation note (patchcore export uses it too)
        torch.onnx.export(tap, (example,), str(out), input_names=["x"], dynamic_axes={"x": {0: "N"}}, dynamo=False)
    return out
