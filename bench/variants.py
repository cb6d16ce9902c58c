"""The feature variants side by side on the bundled categories (the README's table).

    python bench/variants.py [--backbone efficientnet_lite2] [--variants zeros:equal valid:channels ...] [--images N]

Each row runs download, extract, coreset and evaluate in a scratch copy of the project with
params.yaml changed only in aggregation.border and aggregation.layer_weighting, and prints the
metrics and the share of good hazelnut_surface test images whose highest-scoring patch lies on
the patch grid's border. About 2 minutes per row on 2 cores. ``--images N`` keeps only the
first N images of each folder (the tests' tiny run; the figures then mean nothing).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from patchcore.core.scoring import NearestBank, maxima_on_border  # noqa: E402

VARIANTS = [("zeros", "equal"), ("valid", "equal"), ("zeros", "channels"), ("valid", "channels")]
CATEGORIES = ("hazelnut_toy", "hazelnut_surface")


def border_share(folder: Path) -> float:
    with h5py.File(folder / "bank.h5", "r") as b:
        nearest = NearestBank(b["bank"][()])
    with h5py.File(folder / "test.h5", "r") as f:
        h, w = (int(v) for v in f.attrs["grid"])
        patches, labels = f["patches"][()], f["labels"][()]
    return float(maxima_on_border(nearest.distances(patches).reshape(-1, h, w)[labels == 0]).mean())


def keep_first(root: Path, n: int) -> None:
    """Only the first ``n`` images of every image folder under ``root``, and the masks they use."""
    for folder in sorted({p.parent for p in root.rglob("*.png")} | {p.parent for p in root.rglob("*.jpg")}):
        if folder.parent.name != "ground_truth":
            for extra in sorted(p for p in folder.iterdir() if p.is_file())[n:]:
                extra.unlink()
    for mask in root.glob("ground_truth/*/*"):
        stem = mask.stem.removesuffix("_mask")
        if not any((root / "test" / mask.parent.name).glob(f"{stem}.*")):
            mask.unlink()


def stage(project: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "patchcore", *args], cwd=project, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            f"patchcore {' '.join(args)} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}"
        )


def run(project: Path, backbone: str, category: str, images: int | None) -> dict:
    stage(project, "download", "-c", category)
    if images:
        keep_first(project / "data/sample" / category, images)
    for name in ("extract", "coreset", "evaluate"):
        stage(project, name, "-c", category, "-b", backbone)
    return json.loads((project / f"metrics/sample/{backbone}/{category}.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite2")
    parser.add_argument(
        "--variants", nargs="+", default=[f"{b}:{w}" for b, w in VARIANTS], help="border:layer_weighting pairs"
    )
    parser.add_argument("--images", type=int, default=None)
    args = parser.parse_args()
    print(f"data: bundled sample ({', '.join(CATEGORIES)}); backbone {args.backbone}")
    print(
        "| border | layer weighting | toy pixel AUROC | toy AUPRO | surface image AUROC [95% CI] | surface pixel AUROC | surface AUPRO | border max |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for border, weighting in (v.split(":") for v in args.variants):
        with tempfile.TemporaryDirectory() as tmp:
            project = Path(tmp)
            params = yaml.safe_load((REPO / "params.yaml").read_text())
            params["aggregation"].update(border=border, layer_weighting=weighting)
            params["run"].update(categories=list(CATEGORIES), backbones=[args.backbone])
            (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            shutil.copytree(REPO / "data/bundled", project / "data/bundled")
            toy, surface = (run(project, args.backbone, c, args.images) for c in CATEGORIES)
            share = border_share(project / f"features/sample/hazelnut_surface/{args.backbone}")
            ci = surface["ci95"]["image_auroc"]
            print(
                f"| {border} | {weighting} | {toy['pixel_auroc']:.4f} | {toy['aupro']:.4f} | {surface['image_auroc']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}] "
                f"| {surface['pixel_auroc']:.4f} | {surface['aupro']:.4f} | {share:.0%} |",
                flush=True,
            )
    print(f"weights: {surface['weights']}")


if __name__ == "__main__":
    main()
