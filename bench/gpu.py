"""The pipeline on a GPU: extract, coreset (10%) and evaluate on a synthetic MVTec-sized data set.

    python bench/gpu.py [--scale 1.0] [--categories 15] [--size 900] [--device auto] [--json out.json]

Builds 15 categories of 240 train and 115 test PNG images of 900 x 900 pixels with painted
defects and masks (bench/synthetic_mvtec.py; --scale shrinks the image counts, --size the
pixels), then runs the stages' own code (extract.main, coreset.main, evaluate.main) for
wide_resnet50 with random weights (speed does not depend on the weights) on each category,
in one process. Prints per stage and in total: seconds, images/s and peak GPU memory; the bare
forward's images/s on the same batches and the extract stage's ratio to it; the CPU path's
figures for the first category; the coreset crossover (CPU lazy selection vs the GPU loop by
bank size, with whether the picks agree); whether a rerun of extract writes the same bytes;
the lower precisions' speed and feature error.

Needs: torch, torchvision, timm, h5py, numpy, scipy, scikit-learn, pillow, matplotlib, tqdm,
numba, pydantic, faiss-cpu and pyyaml (the project's dependencies without dvc, typer, open_clip).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TQDM_DISABLE", "1")  # the stages' progress bars would bury the figures

import torch  # noqa: E402
import yaml  # noqa: E402
from gpu_parts import aggregation_profile, bare_forward_rate, crossover, decode_rate, feature_error  # noqa: E402
from synthetic_mvtec import MVTEC_CATEGORIES, MVTEC_SIZE, MVTEC_TEST, MVTEC_TRAIN, build  # noqa: E402

from patchcore import config  # noqa: E402
from patchcore.core import devices  # noqa: E402
from stages import coreset, evaluate, extract  # noqa: E402

BACKBONE = "wide_resnet50"


def bench_params(names: list[str], args: argparse.Namespace, device: str, precision: str = "float32") -> config.Params:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["run"] = {"dataset": "synthetic", "categories": names, "backbones": [BACKBONE]}
    raw["download"] = {"synthetic": {"source": "folder", "path": "data/synthetic"}}
    raw["backbones"][BACKBONE]["weights"] = "random"
    raw["extract"].update(batch_size=args.batch_size, num_workers=args.workers, device=device, precision=precision)
    raw["coreset"].update(ratio=0.1, device=device)
    raw["evaluate"]["device"] = device
    return config.validate(config.Params, raw, "bench params")


def timed(device: torch.device, call, *args) -> tuple[float, float]:
    """(seconds, peak GPU memory in GiB) of one stage call."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    call(*args)
    devices.synchronize(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return seconds, peak


def run_category(params: config.Params, name: str, n_images: int, device: torch.device) -> dict:
    row = {"category": name, "images": n_images}
    for stage, module in (("extract", extract), ("coreset", coreset), ("evaluate", evaluate)):
        seconds, peak = timed(device, module.main, params, name, BACKBONE)
        row[stage] = {
            "seconds": round(seconds, 3),
            "images_per_s": round(n_images / seconds, 1),
            "peak_gpu_gib": round(peak, 2),
        }
    row["metrics"] = json.loads(Path(f"metrics/synthetic/{BACKBONE}/{name}.json").read_text())["devices"]
    return row


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def table(rows: list[dict], bare: float) -> None:
    print(
        "| category | images | extract s | extract img/s | vs bare forward | coreset s | evaluate s | peak GPU GiB (x/c/e) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        x, c, e = r["extract"], r["coreset"], r["evaluate"]
        peaks = f"{x['peak_gpu_gib']}/{c['peak_gpu_gib']}/{e['peak_gpu_gib']}"
        ratio = x["images_per_s"] / bare
        print(
            f"| {r['category']} | {r['images']} | {x['seconds']} | {x['images_per_s']} | {ratio:.2f}x | {c['seconds']} | {e['seconds']} | {peaks} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="share of MVTec's image counts per category")
    parser.add_argument("--categories", type=int, default=MVTEC_CATEGORIES)
    parser.add_argument("--size", type=int, default=MVTEC_SIZE, help="image side in pixels")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument(
        "--crossover-sizes", type=int, nargs="*", default=[10_000, 25_000, 50_000, 100_000, 0], help="0: the whole bank"
    )
    parser.add_argument("--skip-cpu", action="store_true", help="no CPU-path run of the first category")
    parser.add_argument("--json", type=Path, help="write every figure here too")
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder")
    args = parser.parse_args()
    device = devices.resolve(args.device, "--device")
    # The run works inside its folder: a relative --json still lands where it was asked for.
    args.json = args.json.resolve() if args.json else None
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args, device, args.workdir)
        return
    # The full-scale data and features take tens of GB: a temporary folder goes when the run ends.
    with tempfile.TemporaryDirectory(prefix="patchcore-gpu-") as tmp:
        run(args, device, Path(tmp))


def run(args: argparse.Namespace, device: torch.device, work: Path) -> None:
    n_train, n_test = max(2, round(MVTEC_TRAIN * args.scale)), max(3, round(MVTEC_TEST * args.scale))
    home = Path.cwd()
    os.chdir(work)
    try:
        measure(args, device, n_train, n_test)
    finally:
        os.chdir(home)


def measure(args: argparse.Namespace, device: torch.device, n_train: int, n_test: int) -> None:
    print(
        f"device {devices.describe(device)}; torch {torch.__version__}; {os.cpu_count()} CPU cores; workdir {Path.cwd()}"
    )
    started = time.perf_counter()
    names = build(Path("data/synthetic"), args.categories, n_train, n_test, args.size)
    print(
        f"data: {len(names)} categories x ({n_train} train + {n_test} test) PNG {args.size} px in {time.perf_counter() - started:.1f} s"
    )
    params = bench_params(names, args, args.device)
    out: dict = {
        "device": devices.describe(device),
        "torch": torch.__version__,
        "cpu_cores": os.cpu_count(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    settings = params.backbone(BACKBONE)
    out["bare_forward_images_per_s"] = bare = bare_forward_rate(
        Path("data/synthetic") / names[0], settings, params.extract, device
    )
    out["decode_images_per_s"] = decode_rate(Path("data/synthetic") / names[0], settings, params.extract)
    started = time.perf_counter()
    rows = [run_category(params, name, n_train + n_test, device) for name in names]
    total = time.perf_counter() - started
    out["categories"], out["total_seconds"] = rows, round(total, 1)
    table(rows, bare)
    n_all = sum(r["images"] for r in rows)
    for stage in ("extract", "coreset", "evaluate"):
        seconds = sum(r[stage]["seconds"] for r in rows)
        out[f"{stage}_total"] = {"seconds": round(seconds, 1), "images_per_s": round(n_all / seconds, 1)}
        print(f"{stage}: {seconds:.1f} s, {n_all / seconds:.1f} images/s over {len(rows)} categories")
    print(
        f"bare forward {bare:.1f} images/s (same batches, already on the device); extract stage / bare = {out['extract_total']['images_per_s'] / bare:.2f}x"
    )
    print(f"all {len(rows)} categories through extract, coreset and evaluate: {total:.1f} s")
    folder = Path(f"features/synthetic/{names[0]}/{BACKBONE}")
    first = {name: sha(folder / name) for name in ("train.h5", "test.h5")}
    extract.main(params, names[0], BACKBONE)
    out["extract_rerun_identical"] = all(sha(folder / name) == digest for name, digest in first.items())
    print(f"extract rerun on {out['device']} writes identical bytes: {out['extract_rerun_identical']}")
    out["aggregation"] = aggregation_profile(settings, params.extract, device)
    out["precisions"] = feature_error(Path("data/synthetic") / names[0], settings, params.extract, device)
    if args.crossover_sizes:
        out["coreset_crossover"] = crossover(folder / "train.h5", args.crossover_sizes, device)
    if not args.skip_cpu:
        cpu_params = bench_params(names, args, "cpu")
        out["cpu_first_category"] = cpu = run_category(cpu_params, names[0], n_train + n_test, torch.device("cpu"))
        print("CPU path, same category:")
        table([cpu], bare)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
