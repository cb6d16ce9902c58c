"""Exact nearest-neighbour candidates with torch: chunked matrix products and a running minimum.

The GPU counterpart of faiss's IndexFlatL2: squared distances |q|^2 - 2 q.b + |b|^2 in
float32, as faiss computes them, over bounded (query chunk x bank chunk) tiles, keeping each
query's ``n`` smallest so far. The caller re-ranks the candidates in float64 (scoring), so
rounding here only matters where it would push the true nearest row out of the candidates.
"""

from __future__ import annotations

import numpy as np
import torch

# float32 values in one tile of distances: 256 MiB, whatever the bank's and the query's sizes
TILE_VALUES = 1 << 26


class TorchFlat:
    def __init__(self, bank: np.ndarray, device: torch.device, tile_values: int = TILE_VALUES):
        self.device = device
        self.bank = torch.as_tensor(np.ascontiguousarray(bank, dtype=np.float32)).to(device)
        self.norms = (self.bank * self.bank).sum(dim=1)
        self.bank_chunk = max(1, min(len(self.bank), tile_values // 1024))
        self.query_chunk = max(1, tile_values // self.bank_chunk)

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """As faiss's index.search: (M, n) float32 squared distances and int64 rows of each query's
        ``n`` nearest bank rows, nearest first (the caller can use either index the same way)."""
        distances = np.empty((len(queries), n), dtype=np.float32)
        rows = np.empty((len(queries), n), dtype=np.int64)
        for start in range(0, len(queries), self.query_chunk):
            q = torch.as_tensor(np.ascontiguousarray(queries[start : start + self.query_chunk], dtype=np.float32)).to(
                self.device
            )
            d, i = self._nearest(q, n)
            distances[start : start + len(q)], rows[start : start + len(q)] = d.cpu().numpy(), i.cpu().numpy()
        return distances, rows

    def _nearest(self, q: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        q_norms = (q * q).sum(dim=1, keepdim=True)
        best_d = torch.full((len(q), 0), float("inf"), device=self.device)
        best_i = torch.zeros((len(q), 0), dtype=torch.int64, device=self.device)
        for first in range(0, len(self.bank), self.bank_chunk):
            rows = self.bank[first : first + self.bank_chunk]
            d2 = q_norms - 2.0 * (q @ rows.T) + self.norms[first : first + len(rows)][None]
            k = min(n, len(rows))
            d, i = torch.topk(d2, k, dim=1, largest=False)
            # the running minimum: this tile's best merged with the best so far
            best_d, order = torch.topk(torch.cat([best_d, d], dim=1), min(n, best_d.shape[1] + k), dim=1, largest=False)
            best_i = torch.gather(torch.cat([best_i, i + first], dim=1), 1, order)
        return best_d, best_i
