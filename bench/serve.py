"""The inspection service under load, against `patchcore predict` on the same images in one call.

    python bench/serve.py [--model features/sample/hazelnut_toy/efficientnet_lite2 --images
    data/sample/hazelnut_toy/test]
        [--requests 1000] [--concurrency 1 8 32] [--rounds 1]

A running `patchcore serve` on 127.0.0.1 gets ``--requests`` raw-body POST /v1/inspect calls at
each concurrency (client threads in this process, one connection per request); p50 / p99
latency, images/s, errors and the server's RSS before and after are printed. predict scores
the same number of images (the same files, cycled) in one call, timed whole and at its
marginal rate (less a call of --small images: what one more image costs once the model is
loaded). Sides alternate within each round; the machine is shared by client and server.
Without --model, a Lite0 model of a synthetic category is made first (what the tests run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from latency import _cli  # noqa: E402
from synthetic_mvtec import build  # noqa: E402


def small_model(tmp: Path, train: int, size: int) -> tuple[Path, Path, Path]:
    """(project, model folder, test images folder) of a Lite0 model of one synthetic category."""
    import yaml

    project = tmp / "project"
    (category,) = build(project / "data/sample", 1, train, 6, size)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["run"].update(categories=[category], backbones=["efficientnet_lite0"])
    params["coreset"].update(ratio=0.1, holdout_folds=0, holdout_fraction=0.0)
    params["evaluate"].update(bootstrap=0, threshold={"method": "f1_max"})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("extract", "coreset", "evaluate"):
        _cli(project, stage, "-c", category, "-b", "efficientnet_lite0")
    return (
        project,
        project / "features/sample" / category / "efficientnet_lite0",
        project / "data/sample" / category / "test",
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(project: Path, model: Path, state: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "PATCHCORE_TOKEN"}
    command = [sys.executable, "-m", "patchcore", "serve", str(model), "--port", str(port), "--state", str(state)]
    server = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if server.poll() is not None:
            raise SystemExit("patchcore serve exited before it was ready")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
                if r.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.2)
    raise SystemExit("patchcore serve did not become ready")


def load(url: str, images: list[bytes], requests: int, concurrency: int) -> dict:
    def one(k: int) -> tuple[float, bool]:
        request = urllib.request.Request(url + "/v1/inspect", data=images[k % len(images)], method="POST")
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=300) as r:
                ok = r.status == 200 and bool(r.read())
        except (urllib.error.HTTPError, OSError):
            ok = False
        return time.perf_counter() - began, ok

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - began
    latency = np.array([t for t, _ in results]) * 1000
    return {
        "p50": float(np.percentile(latency, 50)),
        "p99": float(np.percentile(latency, 99)),
        "rate": requests / wall,
        "errors": sum(not ok for _, ok in results),
    }


def predict_seconds(project: Path, model: Path, folder: Path, out: Path) -> float:
    began = time.perf_counter()
    _cli(project, "predict", str(model), str(folder), "--out", str(out))
    return time.perf_counter() - began


def same_images(files: list[Path], count: int, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for k in range(count):
        source = files[k % len(files)]
        os.link(
            source, dest / f"{k:05d}{source.suffix}"
        ) if source.stat().st_dev == dest.stat().st_dev else shutil.copy(source, dest / f"{k:05d}{source.suffix}")
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a model folder (default: make a small Lite0 one)")
    parser.add_argument(
        "--images", type=Path, help="folder of images to send, cycled (default: the model's test images)"
    )
    parser.add_argument("--project", type=Path, default=REPO, help="the project the model belongs to (for --model)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--small", type=int, default=16, help="images of predict's short call (its fixed cost)")
    parser.add_argument(
        "--train", type=int, default=12, help="without --model: training images of the synthetic category"
    )
    parser.add_argument("--size", type=int, default=256, help="without --model: their size in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        if args.model is None:
            project, model, images_dir = small_model(tmp, args.train, args.size)
        else:
            project, model, images_dir = (
                args.project.resolve(),
                args.model.resolve(),
                (args.images or args.model).resolve(),
            )
        files = sorted(
            p
            for p in (args.images or images_dir).resolve().rglob("*")
            if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif")
        )
        blobs = [p.read_bytes() for p in files]
        big = same_images(files, args.requests, tmp / "same")
        small = same_images(files, args.small, tmp / "small")
        rows: dict[str, list[dict]] = {}
        rss: list[tuple[float, float]] = []
        for r in range(args.rounds):
            whole = predict_seconds(project, model, big, tmp / f"p{r}")
            short = predict_seconds(project, model, small, tmp / f"s{r}")
            rows.setdefault("predict", []).append(
                {"rate": args.requests / whole, "marginal": (args.requests - args.small) / max(whole - short, 1e-9)}
            )
            server, url = start_server(project, model, tmp / f"state{r}")
            try:
                levels = [rss_mb(server.pid)]
                for c in args.concurrency:
                    rows.setdefault(f"serve c={c}", []).append(load(url, blobs, args.requests, c))
                    levels.append(rss_mb(server.pid))
                rss.append(levels)
            finally:
                server.terminate()
                server.wait(timeout=60)
        report(rows, rss, args, model, len(files))


def report(rows: dict, rss: list, args, model: Path, distinct: int) -> None:
    med = {side: {k: float(np.median([r[k] for r in runs])) for k in runs[0]} for side, runs in rows.items()}
    base = med["predict"]
    print(
        f"model {model}; {args.requests} requests of {distinct} distinct images per side; {args.rounds} round(s); {os.cpu_count()} CPUs"
    )
    print(
        f"predict, one call: {base['rate']:.2f} images/s whole, {base['marginal']:.2f} images/s marginal (less a {args.small}-image call)\n"
    )
    print("| side | p50 ms | p99 ms | images/s | vs predict whole | vs predict marginal | errors |")
    print("|---|---|---|---|---|---|---|")
    for side, m in med.items():
        if side == "predict":
            continue
        print(
            f"| {side} | {m['p50']:.1f} | {m['p99']:.1f} | {m['rate']:.2f} | {m['rate'] / base['rate']:.2f}x | {m['rate'] / base['marginal']:.2f}x | {int(m['errors'])} |"
        )
    for levels in rss:
        steps = ", ".join(f"{mb:.0f} MB after c={c}" for c, mb in zip(args.concurrency, levels[1:]))
        print(
            f"\nserver RSS: {levels[0]:.0f} MB ready (warmed with a full batch and each smaller size), {steps} ({levels[-1] - levels[0]:+.0f} MB)"
        )


if __name__ == "__main__":
    main()
