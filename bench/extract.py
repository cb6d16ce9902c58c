"""Extraction throughput: the whole extract stage vs the bare backbone forward on the same batches.

    python bench/extract.py [--backbone efficientnet_lite2] [--repeat 4]

The data are the bundled photos (training images in 4 flips/rotations, plus the test images).
"Bare forward" runs the network up to the tapped layers on batches already in memory; the
stage adds decoding, resizing, patch aggregation and the HDF5 writes. Each stage
configuration (DataLoader workers, channels-last) is timed in this same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stages import backbones, extract  # noqa: E402
from stages import params as P  # noqa: E402
from stages.dataset import list_split  # noqa: E402
from stages.images import image_transform, load_rgb  # noqa: E402
from sample_data import build_category  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite2")
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    settings = P.backbone_settings(params, args.backbone)
    base = P.extract_settings(params)
    loaded = backbones.build(settings)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        build_category(root, args.repeat, ".jpg")
        samples = list_split(root, "train") + list_split(root, "test")
        transform = image_transform(settings)
        batches = [torch.stack([transform(load_rgb(root / s.path)) for s in samples[i : i + base.batch_size]]) for i in range(0, len(samples), base.batch_size)]
        tap = backbones.LayerTap(loaded.model, settings.layers)
        bare = {}
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            loaded.model.to(memory_format=fmt)
            inputs = [b.contiguous(memory_format=fmt) for b in batches]
            with torch.inference_mode():
                tap(inputs[0])  # warm-up
                t0 = time.perf_counter()
                for batch in inputs:
                    tap(batch)
                bare[channels_last] = len(samples) / (time.perf_counter() - t0)
        print(f"data: bundled Hazelnut Toy photos, {len(samples)} images; backbone {args.backbone} ({loaded.weights}); batch {base.batch_size}; torch threads {torch.get_num_threads()}")
        print("| configuration | images/s | vs bare forward (same memory format) |")
        print("|---|---|---|")
        for channels_last, rate in bare.items():
            print(f"| bare forward, channels_last={channels_last} (tensors in memory, to the tapped layers) | {rate:.1f} | 1.00x |")
        for workers in (0, 2):
            for channels_last in (False, True):
                cfg = P.ExtractSettings(base.batch_size, workers, 1.0, channels_last)
                model = backbones.build(settings)
                done = extract.run(root, Path(tmp) / f"out_{workers}_{channels_last}", settings, model, cfg, {"dataset": "bench", "category": "x", "backbone": args.backbone, "arch": settings.arch})
                rate = done["images"] / done["seconds"]
                print(f"| whole stage, num_workers={workers}, channels_last={channels_last} | {rate:.1f} | {rate / bare[channels_last]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
