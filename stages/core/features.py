"""Locally aware patch features (PatchCore section 3.1), pure tensor code."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def aggregate(maps: list[torch.Tensor], target_dim: int) -> torch.Tensor:
    """Turn per-layer feature maps (B, C_i, H_i, W_i) into patch features (B, H, W, target_dim).

    Each map is averaged over its 3x3 neighbourhood (a patch sees its neighbours, so
    a defect is judged in context), deeper maps are resized to the first map's grid,
    the channels are concatenated and then pooled down to ``target_dim``.
    """
    if not maps:
        raise ValueError("need at least one feature map")
    grid = maps[0].shape[-2:]
    pooled = []
    for fmap in maps:
        # count_include_pad=False: border patches average their real neighbours, not zeros.
        smoothed = F.avg_pool2d(fmap, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        if smoothed.shape[-2:] != grid:
            smoothed = F.interpolate(smoothed, size=grid, mode="bilinear", align_corners=False)
        pooled.append(smoothed)
    stacked = torch.cat(pooled, dim=1)  # (B, C, H, W)
    b, c, h, w = stacked.shape
    flat = stacked.permute(0, 2, 3, 1).reshape(b * h * w, 1, c)
    reduced = F.adaptive_avg_pool1d(flat, target_dim)
    return reduced.reshape(b, h, w, target_dim)
