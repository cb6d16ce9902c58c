"""Which torch device a stage computes on: a `device` setting resolved on this machine.

``auto`` is CUDA where torch sees a GPU, else the CPU, so the same params.yaml runs on a
laptop and on a GPU workstation; ``cuda`` or ``cuda:N`` insist on a GPU and fail in one line
where there is none.
"""

from __future__ import annotations

import os

import torch

from patchcore.errors import UsageError

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve(name: str, setting: str = "device") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> the device; ``setting`` names the parameter in errors."""
    head, colon, index = name.partition(":")
    if name not in ("auto", "cpu", "cuda") and not (head == "cuda" and colon and index.isdigit()):
        raise UsageError(f"{setting}: unknown device '{name}'; use auto, cpu, cuda or cuda:N")
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if name != "auto" and not torch.cuda.is_available():
        raise UsageError(
            f"{setting}: '{name}' asks for a GPU but torch sees none on this machine; set it to 'auto' or 'cpu'"
        )
    device = torch.device("cuda", torch.cuda.current_device()) if name in ("auto", "cuda") else torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(
            f"{setting}: '{name}' names GPU {device.index} but this machine has {torch.cuda.device_count()}; use 'cuda' or 'auto'"
        )
    _float32_and_repeatable()
    return device


def _float32_and_repeatable() -> None:
    # float32 means float32: cuDNN would otherwise run convolutions in TF32 (10 mantissa bits)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    # cuDNN may otherwise time several convolution algorithms and keep the fastest, whose sums
    # run in another order from one run to the next; cuBLAS needs a fixed workspace for the same
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def describe(device: torch.device) -> str:
    """What outputs record: ``cpu`` or e.g. ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timings; a CPU has none queued)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
