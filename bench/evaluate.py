"""Evaluation cost of one MVTec-sized class: 110 test images of 28 x 28 patches against a 30k bank.

    python bench/evaluate.py [--images 110] [--bank 30000] [--dim 1024] [--size 224]

Runs the evaluate stage's compute on synthetic features (a Gaussian mixture, 40% of the
images with a square defect): nearest-neighbour search with Eq. 7 reweighting and anomaly
maps (score_images), pixel counting for AUROC/AUPRO, and the 1000-resample bootstrap. File
reading and the PNG pictures are left out; they are small beside these.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from patchcore.core.localization import aupro, count_pixels, region_shares  # noqa: E402
from patchcore.core.metrics import bootstrap, pixel_auroc  # noqa: E402
from patchcore.core.scoring import NearestBank, score_images  # noqa: E402
from patchcore.pipeline.score_rows import SHARD_IMAGES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=110)
    parser.add_argument("--bank", type=int, default=30000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    grid = (28, 28)
    centres = rng.standard_normal((100, args.dim), dtype=np.float32) * 3
    bank = centres[rng.integers(100, size=args.bank)] + rng.standard_normal((args.bank, args.dim), dtype=np.float32)
    labels = (rng.random(args.images) < 0.4).astype(np.int8)
    patches = centres[rng.integers(100, size=args.images * 784)] + rng.standard_normal(
        (args.images * 784, args.dim), dtype=np.float32
    )
    masks = np.zeros((args.images, args.size, args.size), dtype=bool)
    for i in np.flatnonzero(labels):
        patches[i * 784 + 300 : i * 784 + 340] += 4.0  # a defect: patches far from the bank (grid rows 10-12)
        lo, hi = args.size * 10 // 28, args.size * 13 // 28  # the same rows of the map, at any map size
        masks[i, lo:hi, lo:hi] = True
    timings = {}
    t0 = time.perf_counter()
    nearest = NearestBank(bank)
    scores, maps = np.zeros(args.images), np.zeros((args.images, args.size, args.size), dtype=np.float32)
    step = min(SHARD_IMAGES, 65536 // 784)  # the evaluate stage's shards
    for first in range(0, args.images, step):
        rows = slice(first * 784, min(args.images, first + step) * 784)
        s, m = score_images(nearest, patches[rows], grid, 9, args.size, 4.0)
        scores[first : first + len(s)], maps[first : first + len(s)] = s, m
    timings["search + reweighting + maps"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pix = pixel_auroc(masks, maps)
    counts = count_pixels(masks, maps)
    pro = aupro(counts.neg.sum(0), region_shares(counts.regions), 0.3)
    timings["pixel AUROC + AUPRO"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    bootstrap(labels, scores, np.arange(args.images), counts, 1000, 0, 0.3)
    timings["bootstrap, 1000 resamples"] = time.perf_counter() - t0
    print(
        f"synthetic class: {args.images} test images x 784 patches x {args.dim} dims, bank {args.bank}, maps {args.size} px; pixel AUROC {pix if pix is None else round(pix, 3)}, AUPRO {pro if pro is None else round(pro, 3)}"
    )
    print("| step | seconds |")
    print("|---|---|")
    for step_name, seconds in timings.items():
        print(f"| {step_name} | {seconds:.1f} |")
    print(f"| total | {sum(timings.values()):.1f} |")


if __name__ == "__main__":
    main()
