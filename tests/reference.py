"""PatchCore's patch features as the paper (section 3.1) and its reference code compute them.

Written out step by step, independently of patchcore/core/features.py, so the tests can check
that the project's default features are this formulation:

1. patchify: every layer's map is unfolded into zero-padded p x p neighbourhoods
   (torch's Unfold with padding (p - 1) / 2), giving (B, L, C, p, p);
2. the deeper layers' neighbourhoods are brought to the first layer's grid: each of the
   C * p * p maps is resized bilinearly (align_corners=False);
3. preprocessing: each layer's (C, p, p) patch is flattened and average-pooled to the common
   pretrain dimension (adaptive_avg_pool1d), and the layers are stacked: (N, layers, D);
4. aggregation: the stacked vector is flattened and average-pooled to the target dimension.

The project's two named variants, stated the same way:
- border "valid": after step 1, every neighbourhood cell that lies outside the map takes the
  mean of that channel's cells inside it;
- layer weighting "channels": each channel's neighbourhood is averaged to one value (a p x p
  mean), the layers' maps are resized to the first grid, and all channels, concatenated, are
  average-pooled to the target dimension at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def patchify(fmap: torch.Tensor, p: int, border: str = "zeros") -> tuple[torch.Tensor, tuple[int, int]]:
    b, c, h, w = fmap.shape
    unfold = torch.nn.Unfold(kernel_size=p, stride=1, padding=(p - 1) // 2, dilation=1)
    patches = unfold(fmap).reshape(b, c, p, p, -1).permute(0, 4, 1, 2, 3)  # (B, L, C, p, p)
    if border == "valid":
        inside = unfold(torch.ones(1, 1, h, w)).reshape(1, p, p, -1).permute(0, 3, 1, 2).unsqueeze(2)  # (1, L, 1, p, p)
        mean = patches.sum(dim=(3, 4), keepdim=True) / inside.sum(dim=(3, 4), keepdim=True)
        patches = torch.where(inside > 0, patches, mean)
    return patches, (h, w)


def to_reference_grid(patches: torch.Tensor, grid: tuple[int, int], ref: tuple[int, int]) -> torch.Tensor:
    b, _, c, p, _ = patches.shape
    x = patches.reshape(b, grid[0], grid[1], c, p, p).permute(0, 3, 4, 5, 1, 2)  # (B, C, p, p, h, w)
    x = x.reshape(-1, grid[0], grid[1]).unsqueeze(1)
    x = F.interpolate(x, size=ref, mode="bilinear", align_corners=False).squeeze(1)
    x = x.reshape(b, c, p, p, ref[0], ref[1]).permute(0, 4, 5, 1, 2, 3)  # (B, H, W, C, p, p)
    return x.reshape(b, ref[0] * ref[1], c, p, p)


def reference_features(
    maps: list[torch.Tensor],
    pretrain_dim: int,
    target_dim: int,
    p: int = 3,
    border: str = "zeros",
    layer_weighting: str = "equal",
) -> torch.Tensor:
    """(B, C_i, H_i, W_i) maps -> (B, H, W, target_dim), as the reference implementation computes them."""
    patched = [patchify(m, p, border) for m in maps]
    ref = patched[0][1]
    if layer_weighting == "channels":
        return _channel_weighted(patched, ref, target_dim)
    layers = [patched[0][0]] + [to_reference_grid(x, grid, ref) for x, grid in patched[1:]]
    n = layers[0].shape[0] * layers[0].shape[1]
    pooled = [F.adaptive_avg_pool1d(x.reshape(n, 1, -1), pretrain_dim).squeeze(1) for x in layers]  # per layer
    stacked = torch.stack(pooled, dim=1)  # (N, layers, D)
    out = F.adaptive_avg_pool1d(stacked.reshape(n, 1, -1), target_dim).squeeze(1)
    return out.reshape(maps[0].shape[0], ref[0], ref[1], target_dim)


def _channel_weighted(patched: list, ref: tuple[int, int], target_dim: int) -> torch.Tensor:
    resized = []
    for patches, grid in patched:
        b, _, c, _, _ = patches.shape
        means = patches.mean(dim=(3, 4)).permute(0, 2, 1).reshape(b, c, grid[0], grid[1])
        resized.append(F.interpolate(means, size=ref, mode="bilinear", align_corners=False))
    stacked = torch.cat(resized, dim=1).permute(0, 2, 3, 1)  # (B, H, W, sum C)
    b = stacked.shape[0]
    out = F.adaptive_avg_pool1d(stacked.reshape(-1, 1, stacked.shape[-1]), target_dim).squeeze(1)
    return out.reshape(b, ref[0], ref[1], target_dim)
