"""Training a category of large pictures end to end: the extract and coreset stages, timed.

    python bench/train_large.py [--pictures 200] [--megapixels 5] [--scale 0.25]
                                [--coresets 0.01:folds5 0.1:holdout0.2 0.1:folds5]

The target of issue 36: 200 training pictures of 5 megapixels, EfficientNet-Lite2 tiles at a
scale where a defect of 0.1% of the picture still spans 2 x 2 feature patches, extract +
coreset in under 30 minutes on a 2-core machine.

The pictures are the bundled hazelnut_tray's training trays (2048 x 1024, CC-BY-4.0 photos),
enlarged to the asked size and each cut at a seeded offset and flipped, so no two are alike;
`--test` good pictures come with them because the extract stage extracts the test split too
(its time counts here: the figure is the whole stage's). Each stage runs as a user runs it
(`python -m stages.<name>` in a project folder made for the run) in its own process; the
table gives its wall time and peak memory (the process's maximum resident set). Every
`--coresets` entry (`RATIO:folds<K>` or `RATIO:holdout<FRACTION>`) reruns the coreset stage on
the same features.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CATEGORY, DATASET = "tray_large", "large"


def _trays() -> list:
    from PIL import Image

    out = []
    with tarfile.open(REPO / "data/bundled/hazelnut_tray.tar.gz") as tar:
        for member in sorted(tar.getnames()):
            if "/train/good/" in member:
                data = tar.extractfile(member)
                assert data is not None
                with Image.open(data) as image:
                    out.append(image.convert("RGB"))
    return out


def make_pictures(folder: Path, count: int, megapixels: float, seed: int) -> tuple[int, int]:
    """``count`` distinct 2:1 pictures of about ``megapixels`` in ``folder``; returns their size."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    trays, rng = _trays(), np.random.default_rng(seed)
    width = int((megapixels * 1e6 * 2) ** 0.5)
    height = width // 2
    margin = max(8, width // 20)  # each picture is cut from a tray enlarged by this much
    for i in range(count):
        tray = trays[i % len(trays)].resize((width + margin, height + margin // 2), Image.Resampling.BICUBIC)
        left, top = int(rng.integers(margin + 1)), int(rng.integers(margin // 2 + 1))
        picture = tray.crop((left, top, left + width, top + height))
        if rng.random() < 0.5:
            picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        picture.save(folder / f"{i:03d}.jpg", quality=92)
    return width, height


def _stage(project: Path, name: str, backbone: str) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one stage run."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", f"stages.{name}", "--category", CATEGORY, "--backbone", backbone], cwd=project, env=env
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage {name} failed (exit {os.waitstatus_to_exitcode(status)})")
    return seconds, usage.ru_maxrss / 1024


def _calibration(text: str) -> dict:
    if text.startswith("folds"):
        return {"holdout_folds": int(text[5:]), "holdout_fraction": 0.0}
    if text.startswith("holdout"):
        return {"holdout_folds": 0, "holdout_fraction": float(text[7:])}
    raise SystemExit(f"--coresets: calibration {text!r} is neither folds<K> nor holdout<FRACTION>")


def _params(project: Path, args: argparse.Namespace, ratio: float, calibration: dict) -> None:
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["run"].update({"dataset": DATASET, "categories": [CATEGORY], "backbones": [args.backbone]})
    params["download"][DATASET] = {"source": "folder", "path": str(project / "data" / DATASET)}
    geometry = {"name": "tiles", "scale": args.scale, "overlap": args.overlap}
    params["backbones"][args.backbone]["geometry"] = geometry
    params["coreset"].update({"ratio": ratio, **calibration})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pictures", type=int, default=200)
    parser.add_argument("--test", type=int, default=4)
    parser.add_argument("--megapixels", type=float, default=5.0)
    parser.add_argument("--backbone", default="efficientnet_lite2")
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--coresets", nargs="+", default=["0.01:folds5", "0.1:holdout0.2", "0.1:folds5"])
    args = parser.parse_args()

    import h5py

    from patchcore import backbones as bb
    from patchcore.config import load
    from patchcore.datasets.images import views_of

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        root = project / "data" / DATASET / CATEGORY
        width, height = make_pictures(root / "train/good", args.pictures, args.megapixels, 0)
        make_pictures(root / "test/good", args.test, args.megapixels, 1)
        configs = [(float(r), _calibration(c)) for r, c in (entry.split(":") for entry in args.coresets)]
        _params(project, args, *configs[0])
        settings = load(project / "params.yaml").backbone(args.backbone)
        tiles = len(views_of(settings, width, height))
        grid = bb.geometry(settings).grid
        extract_s, extract_mib = _stage(project, "extract", args.backbone)
        features = project / "features" / DATASET / CATEGORY / args.backbone
        with h5py.File(features / "train.h5") as f:
            patches = f["patches"].shape
        print(f"\n{args.pictures} training + {args.test} test pictures of {width} x {height}")
        print(f"({width * height / 1e6:.1f} MP), {args.backbone} tiles of {settings.crop} px at scale {args.scale}")
        print(f"(overlap {args.overlap} px): {tiles} tiles and {tiles * grid[0] * grid[1]} patches per picture,")
        print(f"train.h5 {patches[0]} x {patches[1]}")
        print(f"extract: {extract_s:.1f} s ({(args.pictures + args.test) / extract_s:.2f} pictures/s,")
        print(f"{(args.pictures + args.test) * tiles / extract_s:.1f} tiles/s), peak {extract_mib:.0f} MiB\n")
        print("| coreset ratio | calibration | bank patches | coreset s | coreset peak MiB | extract + coreset min |")
        print("|---|---|---|---|---|---|")
        for (ratio, calibration), entry in zip(configs, args.coresets, strict=True):
            _params(project, args, ratio, calibration)
            seconds, mib = _stage(project, "coreset", args.backbone)
            with h5py.File(features / "bank.h5") as f:
                bank = f["bank"].shape[0]
            total = (extract_s + seconds) / 60
            print(f"| {ratio} | {entry.split(':')[1]} | {bank} | {seconds:.1f} | {mib:.0f} | {total:.1f} |", flush=True)


if __name__ == "__main__":
    main()
