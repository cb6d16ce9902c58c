"""Coreset benchmark: plain greedy vs the pruned greedy of stages/sampling.py (vs anomalib if installed).

Each method runs in its own process on the same bank (same projection, same start), so
times and peak memory are comparable within one run; the picks are compared for identity.

    python bench/coreset.py                                  # 20k and 100k x 1536, 1% and 10%
    python bench/coreset.py --sizes 300000 --ratios 0.01 --kinds random
    pip install anomalib && python bench/coreset.py --methods plain pruned anomalib

Banks: `random` (i.i.d. Gaussian, the worst case for pruning: all distances look alike),
`clustered` (a Gaussian mixture, like the patch features of one product), and `patches`
(real EfficientNet-Lite2 patch features of the bundled photos, tiled to the size asked).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stages.sampling import coreset_size, greedy_kcenter, greedy_kcenter_plain, project, projection_matrix, start_index  # noqa: E402

DIM = 1536


def make_bank(kind: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.standard_normal((n, DIM), dtype=np.float32)
    if kind == "clustered":
        centres = rng.standard_normal((200, DIM), dtype=np.float32) * 3
        return centres[rng.integers(200, size=n)] + rng.standard_normal((n, DIM), dtype=np.float32)
    import h5py

    path = Path(__file__).resolve().parent.parent / "features/sample/hazelnut_toy/efficientnet_lite2/train.h5"
    with h5py.File(path, "r") as f:
        real = f["patches"][()]
    tiles = -(-n // len(real))
    # tile the real patches, with a little noise so copies are not exact duplicates
    return (np.tile(real, (tiles, 1))[:n] + rng.normal(scale=1e-3, size=(n, real.shape[1])).astype(np.float32))


def worker(method: str, kind: str, n: int, ratio: float, queue) -> None:
    bank = make_bank(kind, n)
    k = coreset_size(n, ratio)
    start = start_index(n, 0)
    t0 = time.perf_counter()
    if method == "anomalib":
        import torch
        from anomalib.models.components.sampling import KCenterGreedy

        picks = np.array(KCenterGreedy(torch.from_numpy(bank), sampling_ratio=ratio).select_coreset_idxs())
    else:
        projected = project([bank[i : i + 65536] for i in range(0, n, 65536)], projection_matrix(bank.shape[1], 128, 0))
        fn = greedy_kcenter if method == "pruned" else greedy_kcenter_plain
        picks = fn(projected, k, start, progress=False)
    seconds = time.perf_counter() - t0
    queue.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, picks))


def measure(method: str, kind: str, n: int, ratio: float):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=worker, args=(method, kind, n, ratio, queue))
    proc.start()
    try:
        result = queue.get()
    except Exception:
        result = None
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.01, 0.1])
    parser.add_argument("--kinds", nargs="+", default=["random", "clustered", "patches"])
    parser.add_argument("--methods", nargs="+", default=["plain", "pruned"])
    args = parser.parse_args()
    if "anomalib" in args.methods:
        try:
            import anomalib  # noqa: F401
        except ImportError:
            print("anomalib is not installed in this environment: skipping it (pip install anomalib)")
            args.methods.remove("anomalib")
    print("| bank | N x D | ratio | picks | method | seconds | peak RSS MiB | vs plain | same picks as plain |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind in args.kinds:
        for n in args.sizes:
            for ratio in args.ratios:
                results = {m: measure(m, kind, n, ratio) for m in args.methods}
                base = results.get("plain")
                for method, (seconds, rss, picks) in results.items():
                    speed = f"{base[0] / seconds:.1f}x" if base else "-"
                    same = "-" if not base or method == "plain" else ("yes" if np.array_equal(np.sort(picks), np.sort(base[2])) and (method != "pruned" or np.array_equal(picks, base[2])) else "no")
                    print(f"| {kind} | {n} x {DIM if kind != 'patches' else 168} | {ratio:.0%} | {len(picks)} | {method} | {seconds:.1f} | {rss:.0f} | {speed} | {same} |", flush=True)


if __name__ == "__main__":
    main()
