"""Peak memory of extract and coreset for CLIP RN50x16 at 384 px on a 200+ image training set.

Builds a category from the bundled photos (each training photo in its 8 flips/rotations,
224 images, 48 x 48 patches of 1024 dims each), runs the real `patchcore extract` and
`patchcore coreset` commands, and prints each stage's peak resident memory next to the size
of the full N x D feature matrix, which the stages must never hold at once.

    python bench/memory_large_backbone.py [--ratio 0.01] [--weights random] [--backbone clip_rn50x16] [--flips 8]

RN50x16's published weights cannot be downloaded here, so it runs with `weights: random`
unless they are in the local cache (pass --weights pretrained); memory does not depend on them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sample_data import build_category  # noqa: E402


def run_measured(args: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one command, sampled every 20 ms."""
    start = time.perf_counter()
    proc = psutil.Popen(
        [sys.executable, "-m", "patchcore", *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    if proc.returncode != 0:
        raise SystemExit(f"patchcore {' '.join(args)} failed with exit code {proc.returncode}")
    return time.perf_counter() - start, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--weights", default="random")
    parser.add_argument(
        "--backbone",
        default="clip_rn50x16",
        help="another key of params.yaml's backbones (the tests run efficientnet_lite0)",
    )
    parser.add_argument("--flips", type=int, default=8, help="each training photo in this many flips/rotations (1-8)")
    opts = parser.parse_args()
    BACKBONE = opts.backbone
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["run"]["backbones"] = [BACKBONE]
        params["backbones"][BACKBONE]["weights"] = opts.weights
        params["coreset"]["ratio"] = opts.ratio
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        n_images = build_category(project / "data/sample/hazelnut_toy", opts.flips)
        args = ["-c", "hazelnut_toy", "-b", BACKBONE]
        # A quarter of the images first: if extraction streams, its peak does not grow with the data.
        params["extract"]["train_fraction"] = 0.25
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        q_s, q_mb = run_measured(["extract", *args], project)
        params["extract"]["train_fraction"] = 1.0
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        ex_s, ex_mb = run_measured(["extract", *args], project)
        co_s, co_mb = run_measured(["coreset", *args], project)
        import h5py

        with h5py.File(project / f"features/sample/hazelnut_toy/{BACKBONE}/train.h5", "r") as f:
            n, d = f["patches"].shape
        full_mb = n * d * 4 / 2**20
        print(
            f"data: bundled Hazelnut Toy photos x {opts.flips} flips/rotations = {n_images} training images; backbone {BACKBONE} ({opts.weights} weights), {params['backbones'][BACKBONE]['crop']} px"
        )
        print(f"training patches: {n} x {d} float32 = {full_mb:.0f} MiB if held whole")
        print(f"extract, 1/4 of the images: {q_s:.0f} s, peak RSS {q_mb:.0f} MiB")
        print(
            f"extract, all images: {ex_s:.0f} s, peak RSS {ex_mb:.0f} MiB ({ex_mb / full_mb:.2f} x the full matrix; {ex_mb / q_mb:.2f} x the quarter run)"
        )
        print(
            "(extract's peak is the network and its activations for one batch, not the features: it does not grow with the data)"
        )
        print(
            f"coreset ({opts.ratio:.0%}): {co_s:.0f} s, peak RSS {co_mb:.0f} MiB ({co_mb / full_mb:.2f} x the full matrix)"
        )


if __name__ == "__main__":
    main()
