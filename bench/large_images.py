"""What tiles cost as pictures grow: extract, the coreset, search and the stitch at 1, 5 and 20 megapixels.

    python bench/large_images.py [--backbone efficientnet_lite2] [--megapixels 1 5 20] [--images 2] [--scale 1]
                                 [--coreset-patches 1000000] [--ratio 0.01]

The pictures are the bundled hazelnut_tray's first test picture (2048 x 1024, 2:1) resized to each
size: the content does not change the compute, the pixel count does. Each size runs in its own
process (so its peak memory, VmHWM, is its own) and reports: tiles per picture, extract's
pictures/s and tiles/s (the stage's own loop: decoding, cutting, the backbone, the patch
aggregation; `--images` pictures after a warm-up one), the patches per picture, and the time
to search one picture's patches against a bank of `--bank` rows and to stitch its map.

The coreset row selects `--ratio` of `--coreset-patches` real patches (the extracted ones,
repeated with noise up to the count) in the coreset stage's projection, with the stage's
greedy selection, and reports seconds and peak memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _picture(megapixels: float, out: Path) -> tuple[int, int]:
    from PIL import Image

    with tarfile.open(REPO / "data/bundled/hazelnut_tray.tar.gz") as tar:
        data = tar.extractfile("hazelnut_tray/test/good/000.jpg")
        assert data is not None
        with Image.open(data) as image:
            width = int((megapixels * 1e6 * 2) ** 0.5)
            size = (width, width // 2)
            image.convert("RGB").resize(size, Image.Resampling.BILINEAR).save(out, quality=92)
    return size


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_size(args: argparse.Namespace) -> dict:
    """Runs in a child process: extract ``args.images`` pictures of one size, then search and stitch one."""
    import numpy as np
    import torch

    from patchcore import backbones as bb
    from patchcore.backbones import stream
    from patchcore.config import GeometrySettings, load
    from patchcore.core.scoring import NearestBank, score_images
    from patchcore.datasets.images import views_of
    from patchcore.runtime.patchcore_onnx import stitch

    params = load(REPO / "params.yaml")
    geometry = GeometrySettings(name="tiles", scale=args.scale, overlap=64)
    settings = params.backbone(args.backbone).model_copy(update={"geometry": geometry})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "picture.jpg"
        width, height = _picture(args.size, path)
        loaded = bb.build(settings)
        bb.place(loaded.model, torch.device("cpu"), params.extract.channels_last)
        features = bb.PatchFeatures(bb.LayerTap(loaded.model, settings.layers), settings, params.aggregation)
        tiles = len(views_of(settings, width, height))

        def extract(n: int) -> np.ndarray:
            parts = []
            with torch.inference_mode():
                for patches, _ in stream.host_batches([path] * n, features, torch.device("cpu"), params.extract):
                    parts.append(patches.numpy().reshape(-1, patches.shape[-1]))
            return np.concatenate(parts)

        extract(1)  # warm-up: the aggregation kernels are built once
        started = time.perf_counter()
        patches = extract(args.images)
        seconds = time.perf_counter() - started
        one = patches[: len(patches) // args.images]
        rng = np.random.default_rng(0)
        bank = one[rng.choice(len(one), size=min(args.bank, len(one)), replace=False)]
        nearest = NearestBank(bank + rng.normal(0, 0.05, bank.shape).astype(np.float32))
        grid = bb.geometry(settings).grid
        started = time.perf_counter()
        _, maps = score_images(nearest, one, grid, 9, settings.crop, 4.0, np.array([0, tiles]))
        search = time.perf_counter() - started
        boxes = [v.box() for v in views_of(settings, width, height)]
        started = time.perf_counter()
        stitch(maps, boxes, (height, width))
        stitched = time.perf_counter() - started
    return {
        "size": f"{width} x {height}",
        "megapixels": round(width * height / 1e6, 1),
        "tiles": tiles,
        "pictures_per_s": args.images / seconds,
        "tiles_per_s": args.images * tiles / seconds,
        "patches": len(one),
        "search_s": search,
        "stitch_s": stitched,
        "bank": len(bank),
        "peak_mib": _peak_mib(),
    }


def coreset(args: argparse.Namespace) -> dict:
    """Runs in a child process: the coreset stage's selection on ``args.coreset_patches`` patches."""
    import numpy as np

    from patchcore.config import load
    from patchcore.core.sampling import coreset_size, greedy_kcenter, project, projection_matrix, start_index

    params = load(REPO / "params.yaml")
    dim = params.backbone(args.backbone).target_dim
    rng = np.random.default_rng(0)
    # clustered like real patch features: a few thousand centres, each patch near one
    centres = rng.standard_normal((4096, dim)).astype(np.float32) * 4
    blocks = (
        centres[rng.integers(0, len(centres), 65536)] + rng.standard_normal((65536, dim)).astype(np.float32)
        for _ in range(-(-args.coreset_patches // 65536))
    )
    started = time.perf_counter()
    matrix = projection_matrix(dim, params.coreset.projection_dim, 0)
    points = project(blocks, matrix)[: args.coreset_patches]
    projected = time.perf_counter() - started
    n_pick = coreset_size(len(points), args.ratio)
    started = time.perf_counter()
    greedy_kcenter(points, n_pick, start_index(len(points), 0), progress=False)
    return {
        "patches": len(points),
        "picks": n_pick,
        "projection_s": projected,
        "selection_s": time.perf_counter() - started,
        "peak_mib": _peak_mib(),
    }


def _child(args: argparse.Namespace, role: str, size: float = 0.0) -> dict:
    command = [sys.executable, __file__, "--child", role, "--size", str(size)]
    for key in ("backbone", "images", "scale", "bank", "coreset_patches", "ratio"):
        command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite2")
    parser.add_argument("--megapixels", type=float, nargs="+", default=[1, 5, 20])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--bank", type=int, default=20_000)
    parser.add_argument("--coreset-patches", type=int, default=1_000_000)
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--child", choices=["size", "coreset"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_size(args) if args.child == "size" else coreset(args)))
        return
    print(
        f"data: the bundled hazelnut_tray's first good test picture, resized; backbone {args.backbone}, tiles at scale {args.scale}, overlap 64"
    )
    print(
        "| picture | megapixels | tiles | extract pictures/s | tiles/s | patches per picture | search s (bank) | stitch s | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for megapixels in args.megapixels:
        r = _child(args, "size", megapixels)
        print(
            f"| {r['size']} | {r['megapixels']} | {r['tiles']} | {r['pictures_per_s']:.3f} | {r['tiles_per_s']:.1f} "
            f"| {r['patches']} | {r['search_s']:.2f} ({r['bank']}) | {r['stitch_s']:.2f} | {r['peak_mib']:.0f} |",
            flush=True,
        )
    c = _child(args, "coreset")
    print("| coreset patches | picks | projection s | selection s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    print(f"| {c['patches']} | {c['picks']} | {c['projection_s']:.1f} | {c['selection_s']:.1f} | {c['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
