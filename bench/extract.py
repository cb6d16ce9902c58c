"""Extraction throughput: the whole extract stage vs the bare backbone forward on the same batches.

    python bench/extract.py [--backbone efficientnet_lite2] [--repeat 4] [--rounds 3]

The data are the bundled photos (training images in 4 flips/rotations, plus the test images).
"Bare forward" runs the network up to the tapped layers on batches already in memory; the
stage adds decoding, resizing, patch aggregation and the HDF5 writes. Each stage
configuration (DataLoader workers, channels-last) is timed in this same run, in rounds
that also time the bare forward right after, and the forward alone when images are decoded
between batches: that shows how much of the gap is the forward itself running slower
(weights and threads gone cold) rather than the stage's own work.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stages import backbones  # noqa: E402
from stages.datasets.images import image_transform, load_rgb  # noqa: E402
from stages.datasets.layout import list_split  # noqa: E402

from sample_data import build_category, extract_params, run_extract  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite2")
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings, base = extract_params(args.backbone)
    loaded = backbones.build(settings)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        build_category(root, args.repeat, ".jpg")
        samples = list_split(root, "train") + list_split(root, "test")
        transform = image_transform(settings)
        batches = [
            torch.stack([transform(load_rgb(root / s.path)) for s in samples[i : i + base.batch_size]])
            for i in range(0, len(samples), base.batch_size)
        ]
        tap = backbones.LayerTap(loaded.model, settings.layers)

        def bare_rate(channels_last: bool, decode_between: bool = False) -> float:
            """Images/s of the forward alone; with decode_between, a batch is decoded between forwards (not timed)."""
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            loaded.model.to(memory_format=fmt)
            inputs = [b.contiguous(memory_format=fmt) for b in batches]
            seconds = 0.0
            with torch.inference_mode():
                tap(inputs[0])  # warm-up
                for k, batch in enumerate(inputs):
                    if decode_between:
                        torch.stack([transform(load_rgb(root / s.path)) for s in samples[k * base.batch_size : (k + 1) * base.batch_size]])
                    t0 = time.perf_counter()
                    tap(batch)
                    seconds += time.perf_counter() - t0
            return len(samples) / seconds

        def stage_rate(workers: int, channels_last: bool, tag: str) -> float:
            done = run_extract(
                root,
                Path(tmp) / tag,
                settings,
                base.model_copy(update={"num_workers": workers, "train_fraction": 1.0, "channels_last": channels_last}),
            )
            return done["images"] / done["seconds"]

        print(
            f"data: bundled Hazelnut Toy photos, {len(samples)} images; backbone {args.backbone} ({loaded.weights}); batch {base.batch_size}; torch threads {torch.get_num_threads()}"
        )
        print(
            f"each row: {args.rounds} rounds; every round times the stage, then the bare forward, then the forward alone with images decoded between batches (so all see the same machine load)"
        )
        print(
            "| configuration | stage images/s | bare forward images/s | stage / bare per round | median ratio | forward alone, decoding between batches: vs bare |"
        )
        print("|---|---|---|---|---|---|")
        for workers in (0, 2):
            for channels_last in (False, True):
                rounds = [
                    (
                        stage_rate(workers, channels_last, f"out_{workers}_{channels_last}_{r}"),
                        bare_rate(channels_last),
                        bare_rate(channels_last, decode_between=True),
                    )
                    for r in range(args.rounds)
                ]
                stage, bare = (statistics.median(r[k] for r in rounds) for k in (0, 1))
                ratios = [r[0] / r[1] for r in rounds]
                shown = ", ".join(f"{x:.2f}" for x in ratios)
                between = statistics.median(r[2] / r[1] for r in rounds)
                print(
                    f"| whole stage, num_workers={workers}, channels_last={channels_last} | {stage:.1f} | {bare:.1f} | {shown} | {statistics.median(ratios):.2f}x | {between:.2f}x |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
