"""An exported tiled model on one large picture: where its time goes, in onnxruntime and OpenVINO.

    python bench/tiled_export.py [--pictures 20] [--megapixels 5] [--scale 0.25] [--ratio 0.1] [--rounds 3]

A model of `--pictures` large trays (bench/train_large.py's pictures, EfficientNet-Lite2
tiles) is made by the extract and coreset stages and exported with `patchcore export
--format openvino` (its parity check against evaluate's scores runs too). One test picture of the same size is then timed, in rounds that
alternate the sides:

- cut: the copyable runtime's `Inspector.inputs` (resampling to the scale, cutting the tiles);
- file: the exported graph over all the picture's tiles (batches of `--batch`): the backbone,
  the patch aggregation, the search against the bank, the maps;
- backbone: the bare backbone (up to the tapped layers) exported alone, on the same tiles;
- after: the runtime's Eq. 7 over the tiles (`image_scores`) and the stitch at full size.

The rest is everything but the backbone: (file - backbone) + cut + after. Tiling runs
around the graph, in the runtime; `cut` and `after` are what a tiling inside the graph
could at most save.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bare_backbone import export as export_bare  # noqa: E402
from train_large import CATEGORY, DATASET, _params, _stage, make_pictures  # noqa: E402


def _export(project: Path, backbone: str) -> Path:
    model = Path("features") / DATASET / CATEGORY / backbone
    done = subprocess.run(
        [sys.executable, "-m", "patchcore", "export", str(model), "--out", "exported", "--format", "openvino"]
        + ["--check", f"plots/{DATASET}/{backbone}/{CATEGORY}/scores.csv"],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if done.returncode != 0:
        raise SystemExit(f"patchcore export failed: {done.stderr.strip()[-2000:]}")
    return project / "exported"


def _bare_backbone(project: Path, backbone: str, out: Path):
    """The tapped backbone alone exported to ONNX; returns (path, normalise(uint8 NHWC) -> float NCHW)."""
    import numpy as np
    import torch

    from patchcore import backbones as bb
    from patchcore.config import load

    settings = load(project / "params.yaml").backbone(backbone)
    loaded = bb.build(settings)
    tap = bb.LayerTap(loaded.model, settings.layers)
    mean = np.array(settings.mean, np.float32).reshape(1, 3, 1, 1) * 255
    std = np.array(settings.std, np.float32).reshape(1, 3, 1, 1) * 255

    def normalise(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((x.transpose(0, 3, 1, 2).astype(np.float32) - mean) / std)

    example = torch.from_numpy(normalise(np.zeros((1, settings.crop, settings.crop, 3), np.uint8)))
    return export_bare(tap, example, out), normalise


def _batches(run, tiles, batch: int) -> list:
    return [run(tiles[a : a + batch]) for a in range(0, len(tiles), batch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pictures", type=int, default=20)
    parser.add_argument("--megapixels", type=float, default=5.0)
    parser.add_argument("--backbone", default="efficientnet_lite2")
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import h5py
    import numpy as np
    import onnxruntime as ort
    from PIL import Image

    from patchcore.export.onnx_file import openvino
    from patchcore.runtime.patchcore_onnx import Inspector, image_scores, stitch

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        root = project / "data" / DATASET / CATEGORY
        width, height = make_pictures(root / "train/good", args.pictures, args.megapixels, 0)
        make_pictures(root / "test/good", 1, args.megapixels, 1)
        _params(project, args, args.ratio, {"holdout_folds": 0, "holdout_fraction": 0.1})
        for stage in ("extract", "coreset", "evaluate"):
            _stage(project, stage, args.backbone)
        exported = _export(project, args.backbone)
        bare, normalise = _bare_backbone(project, args.backbone, exported / "backbone.onnx")

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle sessions leave the cores
        inspector = Inspector(exported / "model.onnx", threads=args.threads)
        bare_ort = ort.InferenceSession(str(bare), options, providers=["CPUExecutionProvider"])
        ov = openvino("bench/tiled_export.py")
        f32 = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": args.threads}
        file_ov = ov.Core().compile_model(str(exported / "model.xml"), "CPU", f32)
        bare_ov = ov.Core().compile_model(str(bare), "CPU", f32)
        names = ["score", "anomaly_map", "patch_max"]

        def file_ort(x):
            return inspector.session.run(names, {"image": x})

        def file_openvino(x):
            result = file_ov(x)
            return [result[name] for name in names]

        with Image.open(root / "test/good/000.jpg") as opened:
            image = opened.convert("RGB")
        sides = {
            "onnxruntime": (file_ort, lambda x: bare_ort.run(None, {"x": normalise(x)})),
            "OpenVINO": (file_openvino, lambda x: bare_ov(normalise(x))),
        }
        times: dict = {}
        for _ in range(args.rounds + 1):  # the first round warms up and is not kept
            for side, (file_run, bare_run) in sides.items():
                started = time.perf_counter()
                tiles, boxes = inspector.inputs(image)
                cut = time.perf_counter() - started
                started = time.perf_counter()
                parts = _batches(file_run, tiles, args.batch)
                file_s = time.perf_counter() - started
                started = time.perf_counter()
                score, amap, patch_max = (np.concatenate([p[k] for p in parts]) for k in range(3))
                image_scores(score, patch_max, [len(tiles)])
                stitch(amap, boxes, (height, width))
                after = time.perf_counter() - started
                started = time.perf_counter()
                _batches(bare_run, tiles, args.batch)
                backbone_s = time.perf_counter() - started
                times.setdefault(side, []).append((cut, file_s, backbone_s, after))
        with h5py.File(project / "features" / DATASET / CATEGORY / args.backbone / "bank.h5") as f:
            rows = f["bank"].shape[0]
        print(f"\n{width} x {height} ({width * height / 1e6:.1f} MP), {len(tiles)} tiles of {args.backbone} at scale")
        print(f"{args.scale}, model of {args.pictures} pictures at coreset ratio {args.ratio}, bank {rows} rows,")
        print(f"batch {args.batch}, {args.threads} threads, median of {args.rounds} rounds (ms per picture)\n")
        print("| runtime | backbone | file | in-graph rest | cut | Eq. 7 + stitch | rest / backbone |")
        print("|---|---|---|---|---|---|---|")
        for side, kept in times.items():
            cut, file_s, backbone_s, after = (statistics.median(t[k] for t in kept[1:]) * 1e3 for k in range(4))
            rest = (file_s - backbone_s) + cut + after
            print(
                f"| {side} | {backbone_s:.0f} | {file_s:.0f} | {file_s - backbone_s:.0f} | {cut:.0f} | {after:.0f} "
                f"| {rest / backbone_s:.2f}x |"
            )


if __name__ == "__main__":
    main()
