"""The input geometries side by side on one category: resize + centre crop, the whole image, tiles.

    python bench/geometries.py [--category hazelnut_tray] [--backbone efficientnet_lite2] [--scale 0.5]

Each geometry runs extract, coreset and evaluate as `dvc repro` would, in a scratch project made
from this repository's params.yaml and the bundled category (the same data, weights and every
other setting). Printed per geometry: image AUROC, the pixel metrics at each image's own size
(pixel AUROC, AU-PRO up to FPR 0.3 and 0.05, segmentation F1 at the label-free pixel threshold),
extract's images/s, the memory bank and the training patches, each stage's seconds and the
highest peak memory (RSS) of any stage. `--limit N` keeps N images of each folder (the tests'
tiny run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
# runs one CLI command and reports its peak RSS (KiB on Linux) on stderr's last line
PEAK = (
    "import atexit, resource, runpy, sys\n"
    "atexit.register(lambda: print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
    "sys.argv = ['patchcore', *sys.argv[1:]]\n"
    "runpy.run_module('patchcore', run_name='__main__')\n"
)


def _stage(project: Path, stage: str, category: str, backbone: str) -> tuple[float, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK, stage, "-c", category, "-b", backbone],
        cwd=project,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{stage} {backbone}: {done.stderr.strip()[-2000:]}")
    peak = [line for line in done.stderr.splitlines() if line.startswith("peak_kib ")][-1]
    return seconds, int(peak.split()[1]) / 1024


def _project(root: Path, category: str, limit: int | None) -> Path:
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    with tarfile.open(REPO / "data/bundled" / f"{category}.tar.gz") as tar:
        tar.extractall(root / "data/sample", filter="data")
    if limit:  # the first ``limit`` images of each folder, and their masks
        for folder in sorted((root / "data/sample" / category).glob("*/*")):
            if folder.parent.name in ("train", "test"):
                for extra in sorted(folder.iterdir())[limit:]:
                    extra.unlink()
                    mask = root / "data/sample" / category / "ground_truth" / folder.name / f"{extra.stem}.png"
                    mask.unlink(missing_ok=True)
    return root


def _geometries(backbone: str, scale: float, overlap: int) -> dict[str, dict | None]:
    return {
        backbone: None,
        f"{backbone}_whole": {"name": "whole"},
        f"{backbone}_tiles": {"name": "tiles", "scale": scale, "overlap": overlap},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--category", default="hazelnut_tray")
    parser.add_argument("--backbone", default="efficientnet_lite2")
    parser.add_argument("--scale", type=float, default=0.5, help="the tiles' working scale")
    parser.add_argument("--overlap", type=int, default=64, help="pixels neighbouring tiles share at least")
    parser.add_argument("--limit", type=int, default=None, help="images kept per folder (a tiny run)")
    parser.add_argument("--picture", type=Path, default=None, help="copy the tiles' maps.png here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = _project(Path(tmp), args.category, args.limit)
        params = yaml.safe_load((project / "params.yaml").read_text())
        geometries = _geometries(args.backbone, args.scale, args.overlap)
        for name, geometry in geometries.items():
            entry = dict(params["backbones"][args.backbone])
            entry.pop("geometry", None)
            params["backbones"][name] = {**entry, **({"geometry": geometry} if geometry else {})}
        params["run"].update({"categories": [args.category], "backbones": list(geometries)})
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        print(f"data: the bundled {args.category} (data/bundled/{args.category}.tar.gz); backbone {args.backbone}")
        header = (
            "| geometry | image AUROC | pixel AUROC | AU-PRO@0.3 | AU-PRO@0.05 | SegF1 | extract images/s "
            "| bank / training patches | extract s | coreset s | evaluate s | peak RSS MiB |"
        )
        print(header)
        print("|" + "---|" * 12)
        for name, geometry in geometries.items():
            times, peaks = {}, []
            for stage in ("extract", "coreset", "evaluate"):
                times[stage], peak = _stage(project, stage, args.category, name)
                peaks.append(peak)
            r = json.loads((project / f"metrics/sample/{name}/{args.category}.json").read_text())
            full, images = r["full_size"], r["train_images"] + r["test_images"]
            said = "geometry: " + ("resize_crop" if geometry is None else json.dumps(r["geometry"], sort_keys=True))
            cells = [
                said,
                r["image_auroc"],
                full["pixel_auroc"],
                full["aupro"],
                full["aupro_005"],
                full["seg_f1"],
                f"{images / times['extract']:.2f}",
                f"{r['bank_size']} / {r['train_patches']}",
                *(f"{times[s]:.1f}" for s in ("extract", "coreset", "evaluate")),
                f"{max(peaks):.0f}",
            ]
            print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
        if args.picture:
            args.picture.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(project / f"pictures/sample/{name}/{args.category}/maps.png", args.picture)
        print("weights:", r["weights"])


if __name__ == "__main__":
    main()
