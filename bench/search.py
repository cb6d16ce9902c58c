"""Nearest-neighbour search: exact faiss (flat) vs approximate (HNSW), queries/s and recall@1.

    python bench/search.py [--bank 30000 300000] [--queries 20000] [--dim 1024]

Banks are clustered like patch features (a Gaussian mixture); queries are drawn from the
same mixture. Both indexes run in this one process on the same data.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stages.core.scoring import NearestBank  # noqa: E402


def mixture(rng, n: int, dim: int, centres: np.ndarray) -> np.ndarray:
    return (centres[rng.integers(len(centres), size=n)] + rng.standard_normal((n, dim), dtype=np.float32)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=int, nargs="+", default=[30000, 300000])
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=1024)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((300, args.dim), dtype=np.float32) * 3
    queries = mixture(rng, args.queries, args.dim, centres)
    print("| bank | queries | index | build s | queries/s | recall@1 | speed vs exact |")
    print("|---|---|---|---|---|---|---|")
    for n in args.bank:
        bank = mixture(rng, n, args.dim, centres)
        rows = {}
        for name, above in (("exact", 0), ("hnsw", 1)):
            t0 = time.perf_counter()
            index = NearestBank(bank, approximate_above=above)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            for i in range(0, len(queries), 65536):
                index.search(queries[i : i + 65536], 1)
            qps = len(queries) / (time.perf_counter() - t0)
            recall = index.recall_at_1(queries[:5000]) if index.approximate else 1.0
            rows[name] = (build, qps, recall)
        for name, (build, qps, recall) in rows.items():
            print(
                f"| {n} x {args.dim} | {len(queries)} | {name} | {build:.1f} | {qps:,.0f} | {recall:.4f} | {qps / rows['exact'][1]:.1f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
