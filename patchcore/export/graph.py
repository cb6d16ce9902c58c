"""The exported model as one torch module: uint8 images in, image scores and anomaly maps out.

Everything predict computes after decoding runs inside it, so the traced graph needs no
package of this project: normalisation, the backbone up to its tapped layers, the patch
aggregation, the exact nearest-neighbour search against the memory bank, the paper's Eq. 7
reweighting, and the map's upsampling and blur (two matrix products, core.map_operators).

The search is exact and tiled: the bank is stored as tiles of TILE rows, each tile's squared
distances up to the query's own norm come from one Gemm (-2 q.b + |b|^2: the tile holds -2b,
its bias |b|^2), its CANDIDATES nearest rows are gathered and re-measured as sums of squared
differences (the product form loses digits to cancellation), and the best of all tiles win.
evaluate re-ranks faiss's candidates the same way, in float64. The tiles are row-major, so the
Gemm reads them transposed in place and the gathers take whole rows; -2b is exact in float.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from patchcore.backbones import PatchFeatures
from patchcore.core.map_operators import map_operators
from patchcore.core.scoring import CANDIDATES

TILE = 4096  # bank rows per distance product: at batch 8 of a 33 x 33 grid, 140 MB of distances


class InspectionGraph(nn.Module):
    """(N, S, S, 3) uint8 RGB network inputs (crops, padded images or tiles) -> score (N,), anomaly_map (N, S, S) and
    patch_max (N,), each input's highest patch score (a tiled image's score is that of its input with the highest)."""

    mean: torch.Tensor
    std: torch.Tensor
    map_rows: torch.Tensor
    map_cols_t: torch.Tensor

    def __init__(self, features: PatchFeatures, bank: np.ndarray, reweight: int, grid: tuple[int, int], sigma: float):
        super().__init__()
        s = features.settings
        self.features, self.reweight, self.grid = features, reweight, grid
        self.network = features.tap  # a submodule: its weights become the graph's initializers
        self.register_buffer("mean", torch.tensor(s.mean, dtype=torch.float32).reshape(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(s.std, dtype=torch.float32).reshape(1, 3, 1, 1) * 255.0)
        bank32 = torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32))
        self.tiles = [(start, min(start + TILE, len(bank32))) for start in range(0, len(bank32), TILE)]
        for t, (start, stop) in enumerate(self.tiles):
            self.register_buffer(f"bank_{t}", -2.0 * bank32[start:stop])
            self.register_buffer(f"bank_sq_{t}", (bank32[start:stop].double() ** 2).sum(1).float())
        rows, cols = map_operators(grid, s.crop, sigma)
        self.register_buffer("map_rows", torch.from_numpy(rows).float())
        self.register_buffer("map_cols_t", torch.from_numpy(cols.T.copy()).float())

    def _tile(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"bank_{t}"), getattr(self, f"bank_sq_{t}")

    def _rows(self, t: int, local: torch.Tensor) -> torch.Tensor:
        """Bank rows of tile ``t`` at ``local`` indices (..., k) -> (..., k, D)."""
        tile = self._tile(t)[0]
        return (tile.index_select(0, local.reshape(-1)) * -0.5).reshape(*local.shape, tile.shape[1])

    def nearest(self, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distances (Q, k), ascending, and bank rows (Q, k) of each query's k nearest, exactly."""
        found, where = [], []
        for t, (start, stop) in enumerate(self.tiles):
            tile, tile_sq = self._tile(t)
            c = min(k + CANDIDATES - 1, stop - start)
            # |q - b|^2 - |q|^2: the query's own norm does not change which rows are nearest
            _, local = torch.topk(F.linear(q, tile, tile_sq), c, dim=1, largest=False)
            found.append(((self._rows(t, local) - q[:, None, :]) ** 2).sum(-1))
            where.append(local + start)
        exact, rows = torch.cat(found, 1), torch.cat(where, 1)
        best, at = torch.topk(exact, k, dim=1, largest=False)
        return best, torch.gather(rows, 1, at)

    def bank_rows(self, index: torch.Tensor) -> torch.Tensor:
        """(n,) global bank rows -> (n, D), gathered tile by tile."""
        out = torch.zeros(index.shape[0], self._tile(0)[0].shape[1], dtype=torch.float32, device=index.device)
        for t, (start, stop) in enumerate(self.tiles):
            inside = (index >= start) & (index < stop)
            local = torch.clamp(index - start, 0, stop - start - 1)
            out = torch.where(inside[:, None], self._rows(t, local[:, None])[:, 0], out)
        return out

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (image.permute(0, 3, 1, 2).float() - self.mean) / self.std
        patches = self.features(x)  # (N, h, w, D)
        n, h, w, d = patches.shape
        q = patches.reshape(-1, d)
        d2, nn_row = self.nearest(q, 1)
        dist = torch.sqrt(d2[:, 0]).reshape(n, h * w)
        s_star, top = dist.max(dim=1)
        score = s_star
        if self.reweight > 1:
            picked = top + torch.arange(n, device=top.device) * (h * w)
            m_test = q.index_select(0, picked)  # each image's highest-scoring patch
            m_star = self.bank_rows(nn_row[:, 0].index_select(0, picked))  # its nearest bank patch
            _, support = self.nearest(m_star, self.reweight)  # N_b(m*), m* among them
            around = (
                ((self.bank_rows(support.reshape(-1)).reshape(n, self.reweight, d) - m_test[:, None, :]) ** 2)
                .sum(-1)
                .sqrt()
            )
            peak = around.max(dim=1).values
            score = (1.0 - torch.exp(s_star - peak) / torch.exp(around - peak[:, None]).sum(1)) * s_star
        maps = self.map_rows @ dist.reshape(n, h, w) @ self.map_cols_t
        return score, maps, s_star
