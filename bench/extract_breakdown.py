"""Where the extract stage's time goes: forward, patch aggregation and the rest, per image.

    python bench/extract_breakdown.py [--backbone efficientnet_lite2] [--random-weights] [--rounds 3]

Runs the real stage (default params: batch size, channels-last) on the bundled photos in 4
flips/rotations plus the test images, with timers around the network forward and the patch
aggregation; "rest" is decoding, resizing, normalising, batching and the HDF5 writes. The
first round includes one-off warm-up; compare the later ones.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from patchcore import backbones  # noqa: E402

from sample_data import build_category, extract_params, run_extract  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite2")
    parser.add_argument(
        "--random-weights", action="store_true", help="for a backbone whose weights cannot be downloaded here"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings, cfg = extract_params(args.backbone, args.random_weights)
    spent = {"forward": 0.0, "features": 0.0}

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t0

        return wrapper

    # the features of a batch are the forward (LayerTap) followed by the aggregation
    backbones.LayerTap.__call__ = timed("forward", backbones.LayerTap.__call__)
    backbones.PatchFeatures.__call__ = timed("features", backbones.PatchFeatures.__call__)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        build_category(root, 4, ".jpg")
        print(
            f"backbone {args.backbone}; batch {cfg.batch_size}; channels_last {cfg.channels_last}; num_workers {cfg.num_workers}"
        )
        print("| round | images | stage s | forward s | aggregation s | rest s | rest share |")
        print("|---|---|---|---|---|---|---|")
        for r in range(args.rounds):
            spent.update(forward=0.0, features=0.0)
            done = run_extract(root, Path(tmp) / f"out{r}", settings, cfg)
            aggregation = spent["features"] - spent["forward"]
            rest = done["seconds"] - spent["features"]
            print(
                f"| {r} | {done['images']} | {done['seconds']:.2f} | {spent['forward']:.2f} | {aggregation:.2f} | {rest:.2f} | {rest / done['seconds']:.0%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
