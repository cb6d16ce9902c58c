"""Locally aware patch features (PatchCore section 3.1), pure tensor code.

The default is the formulation of the paper's reference implementation:

1. every layer's map is cut into ``patchsize`` x ``patchsize`` neighbourhoods around each
   cell (zero padding at the border), each flattened channel-major into C * p * p values;
2. a deeper layer's neighbourhood maps are resized bilinearly to the first layer's grid;
3. each layer's vector is average-pooled to ``layer_dim`` values (every layer counts equally);
4. the layers' pooled vectors are concatenated and average-pooled to ``target_dim``.

Two choices have named variants, so that experiments can compare them:
- border ``valid``: a border patch averages only its real neighbours instead of zeros (with
  equal weighting: the cells outside the map take the mean of the real ones);
- layer weighting ``channels``: each map is averaged over its neighbourhood, resized, and
  the concatenated channels are pooled to ``target_dim`` at once, so a layer's share of the
  feature is proportional to its channel count (this project's formulation before).

How it is computed: steps 1, 3 and 4 are fixed linear maps along channels and step 2 is a
linear map along space, so they commute. Written out as steps, the resize runs over all
C * p * p neighbourhood channels of a deeper layer (9,216 for WideResNet50's layer3) and
dominates the cost. Here the three channel maps are composed once per shape into one sparse
kernel: every output value is a weighted sum of a few neighbouring channels' p x p cells, a
grouped convolution at the layer's own resolution, and only ``target_dim`` channels are
resized. The ``channels`` weighting is the same pipeline with each layer pooled to its own
channel count (one channel's p x p mean each). tests/reference.py states the steps as
written; the two agree to float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F

Border = Literal["zeros", "valid"]
LayerWeighting = Literal["equal", "channels"]


# On a GPU, bilinear resizing of a channels-first map runs one thread per output cell, each
# looping over every channel of the batch: the channels-last kernel spreads them over the GPU
# instead. The CPU keeps its layout (and bytes).
GPU_RESIZE_CHANNELS_LAST = True


@dataclass(frozen=True)
class LayerKernel:
    """One layer's share of the output: ``outputs`` consecutive values from ``first_output``,
    output i summing ``span`` channels from ``first_channel[i]`` over their p x p cells."""

    first_output: int
    first_channel: tuple[int, ...]
    span: int
    weights: torch.Tensor  # (outputs, span, p, p) float64
    gather: torch.Tensor | None  # the input channels in the order the outputs sum them; None: as they are

    @property
    def outputs(self) -> int:
        return len(self.first_channel)


def _windows(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """adaptive_avg_pool1d's bins: output i averages inputs [start, end)."""
    return [((i * n_in) // n_out, -(-(i + 1) * n_in // n_out)) for i in range(n_out)]


@lru_cache(maxsize=64)
def kernels(
    channels: tuple[int, ...], patchsize: int, layer_dims: tuple[int, ...], target_dim: int
) -> tuple[LayerKernel, ...]:
    """Compose, in float64, each layer's pooling (C * p * p -> layer_dims[l]) with its columns
    of the final pooling (sum(layer_dims) -> target_dim)."""
    pp = patchsize * patchsize
    final = _windows(sum(layer_dims), target_dim)
    out, offset = [], 0
    for c, dim in zip(channels, layer_dims):
        pooled = _windows(c * pp, dim)
        rows: dict[int, dict[int, float]] = {}
        for i, (start, end) in enumerate(final):
            for j in range(max(start, offset), min(end, offset + dim)):
                s, e = pooled[j - offset]
                row = rows.setdefault(i, {})
                for f in range(s, e):
                    row[f] = row.get(f, 0.0) + 1.0 / ((end - start) * (e - s))
        offset += dim
        order = sorted(rows)  # consecutive: the final bins are monotone
        lows = tuple(min(rows[i]) // pp for i in order)
        span = max(max(rows[i]) // pp - lo + 1 for i, lo in zip(order, lows))
        lows = tuple(min(lo, c - span) for lo in lows)  # keep every gathered channel inside the map
        weights = torch.zeros(len(order), span, pp, dtype=torch.float64)
        for k, (i, lo) in enumerate(zip(order, lows)):
            for f, w in rows[i].items():
                weights[k, f // pp - lo, f % pp] = w
        index = [lo + t for lo in lows for t in range(span)]
        gather = None if index == list(range(c)) else torch.tensor(index)
        out.append(LayerKernel(order[0], lows, span, weights.reshape(len(order), span, patchsize, patchsize), gather))
    return tuple(out)


def _to_grid(maps: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == grid:
        return maps
    if maps.is_cuda and GPU_RESIZE_CHANNELS_LAST:
        maps = maps.contiguous(memory_format=torch.channels_last)
    return F.interpolate(maps, size=grid, mode="bilinear", align_corners=False)


def _gathered(fmap: torch.Tensor, kernel: LayerKernel) -> torch.Tensor:
    """(B, C, h, w) -> (B, outputs * span, h, w): the channels each output sums, in order."""
    return fmap if kernel.gather is None else fmap.index_select(1, kernel.gather.to(fmap.device))


def _layer(fmap: torch.Tensor, kernel: LayerKernel, border: Border) -> torch.Tensor:
    """One layer's contribution (B, outputs, h, w) at its own resolution."""
    p = kernel.weights.shape[-1]
    weights = kernel.weights.to(device=fmap.device, dtype=fmap.dtype)
    out = F.conv2d(_gathered(fmap, kernel), weights, padding=p // 2, groups=kernel.outputs)  # zero padding
    if border == "valid":
        # the cells outside the map hold their channel's mean over the real cells: add that
        # mean times the weight the outside cells carry at this position
        h, w = fmap.shape[-2:]
        outside = F.pad(torch.zeros(1, 1, h, w, dtype=fmap.dtype, device=fmap.device), (p // 2,) * 4, value=1.0)
        carried = F.conv2d(outside, weights.reshape(-1, 1, p, p))  # (1, outputs * span, h, w)
        mean = F.avg_pool2d(fmap, p, stride=1, padding=p // 2, count_include_pad=False)
        extra = (_gathered(mean, kernel) * carried).reshape(fmap.shape[0], kernel.outputs, kernel.span, h, w).sum(dim=2)
        out = out + extra
    return out


def aggregate(
    maps: list[torch.Tensor],
    target_dim: int,
    layer_dim: int | None = None,
    patchsize: int = 3,
    border: Border = "zeros",
    layer_weighting: LayerWeighting = "equal",
) -> torch.Tensor:
    """Per-layer feature maps (B, C_i, H_i, W_i) -> patch features (B, H, W, target_dim) on the first map's grid.

    ``layer_dim`` (equal weighting only) is the common length each layer is pooled to; None
    means ``target_dim``.
    """
    if not maps:
        raise ValueError("need at least one feature map")
    if patchsize < 1 or patchsize % 2 == 0:
        raise ValueError(f"patchsize must be a positive odd number, got {patchsize}")
    channels = tuple(int(m.shape[1]) for m in maps)
    if layer_weighting == "equal":
        dims = (layer_dim or target_dim,) * len(maps)
    elif layer_weighting == "channels":
        dims = channels
    else:
        raise ValueError(f"layer_weighting must be 'equal' or 'channels', got {layer_weighting!r}")
    b, _, h, w = maps[0].shape
    out = maps[0].new_zeros(b, target_dim, h, w)
    for fmap, kernel in zip(maps, kernels(channels, patchsize, dims, target_dim), strict=True):
        part = _to_grid(_layer(fmap, kernel, border), (h, w))
        out[:, kernel.first_output : kernel.first_output + kernel.outputs] += part
    return out.permute(0, 2, 3, 1).contiguous()
