"""Nearest-neighbour search: exact faiss (flat) vs approximate (HNSW), queries/s and recall@1,
against the float32 matrix product of the same shapes.

    python bench/search.py [--bank 30000 300000] [--queries 20000] [--dim 1024] [--rounds 2]

Banks are clustered like patch features (a Gaussian mixture); queries are drawn from the
same mixture. Both indexes run in this one process on the same data. "matmul" is numpy's
float32 product of the queries with the bank in tiles of 4,096 queries (the tiles faiss
uses), the products alone, nothing kept: the rate an exact search cannot beat. The exact
search is the project's (faiss's candidates, then the float64 re-rank); rounds alternate
matmul and search, and the ratio is the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from patchcore.core.scoring import NearestBank  # noqa: E402


def mixture(rng, n: int, dim: int, centres: np.ndarray) -> np.ndarray:
    return (centres[rng.integers(len(centres), size=n)] + rng.standard_normal((n, dim), dtype=np.float32)).astype(
        np.float32
    )


def matmul_rate(queries: np.ndarray, bank: np.ndarray) -> float:
    """Queries/s of the float32 products alone, tile by tile."""
    t0 = time.perf_counter()
    for i in range(0, len(queries), 4096):
        queries[i : i + 4096] @ bank.T
    return len(queries) / (time.perf_counter() - t0)


def search_rate(index: NearestBank, queries: np.ndarray) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(queries), 65536):
        index.search(queries[i : i + 65536], 1)
    return len(queries) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=int, nargs="+", default=[30000, 300000])
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((300, args.dim), dtype=np.float32) * 3
    queries = mixture(rng, args.queries, args.dim, centres)
    print(
        "| bank | queries | index | build s | queries/s | recall@1 | speed vs exact | float32 matmul queries/s | exact search / matmul |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.bank:
        bank = mixture(rng, n, args.dim, centres)
        rows = {}
        for name, above in (("exact", 0), ("hnsw", 1)):
            t0 = time.perf_counter()
            index = NearestBank(bank, approximate_above=above)
            build = time.perf_counter() - t0
            index.search(queries[:64], 1)  # warm-up (numba's compiled re-rank is loaded once)
            recall = index.recall_at_1(queries[:5000]) if index.approximate else 1.0
            if name == "exact":
                rounds = [(matmul_rate(queries, bank), search_rate(index, queries)) for _ in range(args.rounds)]
                mm, qps = statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds)
                ratio = f"{statistics.median(r[1] / r[0] for r in rounds):.2f}x"
            else:
                mm, qps, ratio = None, search_rate(index, queries), "-"
            rows[name] = (build, qps, recall, mm, ratio)
        for name, (build, qps, recall, mm, ratio) in rows.items():
            shown = "-" if mm is None else f"{mm:,.0f}"
            print(
                f"| {n} x {args.dim} | {len(queries)} | {name} | {build:.1f} | {qps:,.0f} | {recall:.4f} | {qps / rows['exact'][1]:.1f}x | {shown} | {ratio} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
