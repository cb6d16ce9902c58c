"""Extraction throughput: the whole extract stage vs the bare backbone forward on the same images.

    python bench/extract.py [--backbone efficientnet_lite2] [--random-weights] [--repeat 4] [--rounds 3] [--all-configs]

The data are the bundled photos (training images in 4 flips/rotations, plus the test images).
"Bare forward" decodes, resizes and normalises each batch and runs the network up to the
tapped layers, nothing else: decoding is on both sides of the ratio. The stage adds the patch
aggregation, the HDF5 writes and its bookkeeping. Rounds alternate stage and bare forward, and
the ratio is taken per round, so both sides of it saw the same machine load. The forward
alone (batches already decoded) is shown too. ``--all-configs`` also times DataLoader workers
and the channels-first layout; by default only params.yaml's configuration runs.
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

from patchcore import backbones  # noqa: E402
from patchcore.datasets.images import image_transform, load_rgb  # noqa: E402
from patchcore.datasets.layout import list_split  # noqa: E402

from sample_data import build_category, extract_params, run_extract  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite2")
    parser.add_argument(
        "--random-weights", action="store_true", help="for a backbone whose weights cannot be downloaded here"
    )
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--all-configs", action="store_true")
    args = parser.parse_args()
    settings, base = extract_params(args.backbone, args.random_weights)
    loaded = backbones.build(settings)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        build_category(root, args.repeat, ".jpg")
        samples = list_split(root, "train") + list_split(root, "test")
        transform = image_transform(settings)
        groups = [samples[i : i + base.batch_size] for i in range(0, len(samples), base.batch_size)]
        decoded = [torch.stack([transform(load_rgb(root / s.path)) for s in group]) for group in groups]
        tap = backbones.LayerTap(loaded.model, settings.layers)

        def bare_rate(channels_last: bool, decode: bool) -> float:
            """Images/s of the forward alone, with each batch decoded and normalised first when ``decode``."""
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            loaded.model.to(memory_format=fmt)
            with torch.inference_mode():
                tap(decoded[0].contiguous(memory_format=fmt))  # warm-up
                t0 = time.perf_counter()
                for group, ready in zip(groups, decoded):
                    batch = torch.stack([transform(load_rgb(root / s.path)) for s in group]) if decode else ready
                    tap(batch.contiguous(memory_format=fmt))
                return len(samples) / (time.perf_counter() - t0)

        def stage_rate(workers: int, channels_last: bool, tag: str) -> float:
            update = {"num_workers": workers, "train_fraction": 1.0, "channels_last": channels_last}
            done = run_extract(root, Path(tmp) / tag, settings, base.model_copy(update=update))
            return done["images"] / done["seconds"]

        print(
            f"data: bundled Hazelnut Toy photos, {len(samples)} images; backbone {args.backbone} ({loaded.weights}); batch {base.batch_size}; torch threads {torch.get_num_threads()}"
        )
        print(
            f"each row: {args.rounds} rounds, each timing the stage, the bare forward with decoding, and the forward alone"
        )
        print(
            "| configuration | stage images/s | bare forward + decode images/s | stage / bare per round | median ratio | forward alone images/s |"
        )
        print("|---|---|---|---|---|---|")
        configs = (
            [(w, c) for w in (0, 2) for c in (False, True)]
            if args.all_configs
            else [(base.num_workers, base.channels_last)]
        )
        for workers, channels_last in configs:
            rounds = [
                (
                    stage_rate(workers, channels_last, f"out_{workers}_{channels_last}_{r}"),
                    bare_rate(channels_last, True),
                    bare_rate(channels_last, False),
                )
                for r in range(args.rounds)
            ]
            stage, bare, alone = (statistics.median(r[k] for r in rounds) for k in (0, 1, 2))
            ratios = [r[0] / r[1] for r in rounds]
            shown = ", ".join(f"{x:.2f}" for x in ratios)
            print(
                f"| whole stage, num_workers={workers}, channels_last={channels_last} | {stage:.1f} | {bare:.1f} | {shown} | {statistics.median(ratios):.2f}x | {alone:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
