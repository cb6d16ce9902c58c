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
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Border = Literal["zeros", "valid"]
LayerWeighting = Literal["equal", "channels"]


# On a GPU, bilinear resizing of a channels-first map runs one thread per output cell, each
# looping over every channel of the batch (thousands of neighbourhood channels here): the
# channels-last kernel spreads them over the GPU instead. The CPU keeps its layout (and bytes).
GPU_RESIZE_CHANNELS_LAST = True


def _to_grid(maps: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == grid:
        return maps
    if maps.is_cuda and GPU_RESIZE_CHANNELS_LAST:
        maps = maps.contiguous(memory_format=torch.channels_last)
    return F.interpolate(maps, size=grid, mode="bilinear", align_corners=False)


def _rows(maps: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) -> (B * H * W, 1, K): one row per patch, ready for 1-d pooling."""
    b, k, h, w = maps.shape
    return maps.permute(0, 2, 3, 1).reshape(b * h * w, 1, k)


def _neighbourhoods(fmap: torch.Tensor, patchsize: int, border: Border) -> torch.Tensor:
    """(B, C, h, w) -> (B, C * p * p, h, w): each cell's p x p neighbourhood, channel-major.

    Outside the map the neighbourhood holds zeros, or with border ``valid`` the mean of its real
    cells, so that any average over a channel's neighbourhood is the average of real cells only.
    """
    b, c, h, w = fmap.shape
    values = F.unfold(fmap, kernel_size=patchsize, padding=patchsize // 2)  # (B, C*p*p, h*w)
    if border == "valid":
        real = F.unfold(torch.ones_like(fmap[:1, :1]), kernel_size=patchsize, padding=patchsize // 2)  # (1, p*p, h*w)
        per_channel = values.reshape(b, c, patchsize * patchsize, h * w)
        mean = per_channel.sum(dim=2, keepdim=True) / real.sum(dim=1, keepdim=True).unsqueeze(1)
        values = (per_channel + (1.0 - real.unsqueeze(1)) * mean).reshape(b, -1, h * w)
    return values.reshape(b, -1, h, w)


def _equal(maps: list[torch.Tensor], target_dim: int, layer_dim: int, patchsize: int, border: Border) -> torch.Tensor:
    grid = (int(maps[0].shape[-2]), int(maps[0].shape[-1]))
    per_layer = [F.adaptive_avg_pool1d(_rows(_to_grid(_neighbourhoods(fmap, patchsize, border), grid)), layer_dim) for fmap in maps]
    return F.adaptive_avg_pool1d(torch.cat(per_layer, dim=2), target_dim)


def _channels(maps: list[torch.Tensor], target_dim: int, patchsize: int, border: Border) -> torch.Tensor:
    grid = (int(maps[0].shape[-2]), int(maps[0].shape[-1]))
    smoothed = [
        _to_grid(F.avg_pool2d(m, kernel_size=patchsize, stride=1, padding=patchsize // 2, count_include_pad=border == "zeros"), grid) for m in maps
    ]
    return F.adaptive_avg_pool1d(_rows(torch.cat(smoothed, dim=1)), target_dim)


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
    b, _, h, w = maps[0].shape
    if layer_weighting == "equal":
        rows = _equal(maps, target_dim, layer_dim or target_dim, patchsize, border)
    elif layer_weighting == "channels":
        rows = _channels(maps, target_dim, patchsize, border)
    else:
        raise ValueError(f"layer_weighting must be 'equal' or 'channels', got {layer_weighting!r}")
    return rows.reshape(b, h, w, target_dim)
