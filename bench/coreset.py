"""Coreset benchmark: plain greedy vs the lazy greedy of patchcore/core/sampling.py (vs anomalib if installed).

Each method runs in its own process on the same bank, read from an HDF5 file as the coreset
stage reads it (same projection, same start), so times and peak memory are comparable
within one run; the picks are compared for identity. Seconds cover projection + selection;
"selection alone" leaves out the projection, which both take the same time for.

    python bench/coreset.py                                  # 20k and 100k x 1536, 1% and 10%
    python bench/coreset.py --sizes 300000 --ratios 0.01 --kinds random
    pip install anomalib && python bench/coreset.py --methods plain lazy anomalib

Banks: `random` (i.i.d. Gaussian, the worst case: all distances look alike, so no bound settles a pair),
`clustered` (a Gaussian mixture, like the patch features of one product), and `patches`
(real EfficientNet-Lite2 patch features of the bundled photos, tiled to the size asked).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from patchcore.core.sampling import (  # noqa: E402
    coreset_size,
    greedy_kcenter,
    greedy_kcenter_plain,
    project,
    projection_matrix,
    start_index,
)
from patchcore.pipeline.memory_bank import READ_ROWS  # noqa: E402

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
    return np.tile(real, (tiles, 1))[:n] + rng.normal(scale=1e-3, size=(n, real.shape[1])).astype(np.float32)


def peak_rss_mib() -> float:
    """This process's own high-water mark (ru_maxrss would include the parent's, inherited at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(method: str, bank_file: str, ratio: float, queue) -> None:
    import h5py

    with h5py.File(bank_file, "r") as f:
        patches = f["patches"]
        n, d = patches.shape
        k = coreset_size(n, ratio)
        start = start_index(n, 0)
        if method == "lazy":  # numba compiles on first use (cached on disk after); not part of the timing
            greedy_kcenter(np.random.default_rng(0).random((64, 8), dtype=np.float32), 4, 0, progress=False)
        t0 = time.perf_counter()
        projecting = float("nan")  # anomalib projects inside its own selection
        if method == "anomalib":  # it needs the whole bank as one tensor
            import torch
            from anomalib.models.components.sampling import KCenterGreedy

            picks = np.array(KCenterGreedy(torch.from_numpy(patches[()]), sampling_ratio=ratio).select_coreset_idxs())
        else:  # streamed from HDF5 as the coreset stage does
            projected = project(
                (patches[i : i + READ_ROWS] for i in range(0, n, READ_ROWS)), projection_matrix(d, 128, 0)
            )
            projecting = time.perf_counter() - t0
            fn = greedy_kcenter if method == "lazy" else greedy_kcenter_plain
            picks = fn(projected, k, start, progress=False)
    seconds = time.perf_counter() - t0
    queue.put((seconds, projecting, peak_rss_mib(), picks))


def write_bank(kind: str, n: int, path: Path) -> None:
    import h5py

    bank = make_bank(kind, n)
    with h5py.File(path, "w") as f:
        f.create_dataset("patches", data=bank, chunks=(min(4096, n), bank.shape[1]))


def measure(method: str, bank_file: Path, ratio: float):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=worker, args=(method, str(bank_file), ratio, queue))
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
    parser.add_argument("--methods", nargs="+", default=["plain", "lazy"])
    args = parser.parse_args()
    if "anomalib" in args.methods:
        try:
            import anomalib  # noqa: F401
        except ImportError:
            print("anomalib is not installed in this environment: skipping it (pip install anomalib)")
            args.methods.remove("anomalib")
    print(
        "| bank | N x D | ratio | picks | method | seconds | of which projection | peak RSS MiB | vs plain | selection alone vs plain | same picks as plain |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    tmp = Path(tempfile.mkdtemp())
    for kind in args.kinds:
        for n in args.sizes:
            bank_file = tmp / f"{kind}_{n}.h5"
            write_bank(kind, n, bank_file)
            for ratio in args.ratios:
                results = {m: measure(m, bank_file, ratio) for m in args.methods}
                base = results.get("plain")
                for method, (seconds, projecting, rss, picks) in results.items():
                    speed = f"{base[0] / seconds:.1f}x" if base else "-"
                    alone = (
                        f"{(base[0] - base[1]) / (seconds - projecting):.1f}x"
                        if base and projecting == projecting
                        else "-"
                    )
                    same = (
                        "-"
                        if not base or method == "plain"
                        else (
                            "yes"
                            if np.array_equal(np.sort(picks), np.sort(base[3]))
                            and (method != "lazy" or np.array_equal(picks, base[3]))
                            else "no"
                        )
                    )
                    print(
                        f"| {kind} | {n} x {DIM if kind != 'patches' else 168} | {ratio:.0%} | {len(picks)} | {method} | {seconds:.1f} | {projecting:.1f} | {rss:.0f} | {speed} | {alone} | {same} |",
                        flush=True,
                    )
            bank_file.unlink()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
