"""Per-image latency of an exported model against the torch predict path, the bare backbone and anomalib's export.

    python bench/latency.py [--backbones efficientnet_lite2 wide_resnet50] [--train 60] [--calls 20] [--rounds 2]
        [--peer-python /path/to/peers-venv/bin/python]

For each backbone a model is made on one synthetic category (bench/synthetic_mvtec.py) by the
pipeline's own stages, exported with ``patchcore export --format openvino`` (its parity check
against evaluate's scores runs too), and timed at batch 1 and batch 8 on already prepared
inputs (decoding is the same Pillow work on every side):

- torch: the predict path (backbone, aggregation, faiss search, Eq. 7, maps) and the bare backbone
  forward up to the tapped layers;
- onnxruntime and OpenVINO (CPU, f32): the exported file, and the bare backbone exported alone;
- anomalib 2.7 (with ``--peer-python``, in its own environment, never a project dependency): its
  Patchcore fitted on the same images with the same backbone and a 10% coreset, with its own
  pre-processing (256 px, no crop, so its bank holds 1.31x the project's rows), exported by
  ``Engine.export`` to ONNX and run in onnxruntime at the batch its export fixes (2).

Rounds alternate the sides; p50 and p99 are over every timed call of every round (latency per
image = call time / batch). WideResNet50 runs with random weights (its published ones cannot be
downloaded here; the time does not depend on the values), Lite2 with its ImageNet weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bare_backbone import export as export_bare  # noqa: E402
from synthetic_mvtec import build  # noqa: E402

# in anomalib's environment: fit Patchcore on the category, export it to ONNX, print the file and its bank rows
ANOMALIB_FIT = """
import json, sys, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
import torch
from anomalib.data import Folder
from anomalib.engine import Engine
from anomalib.models import Patchcore
root, out, threads = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
data = Folder(name="bench", root=root, normal_dir="train/good", abnormal_dir="test/paint", normal_test_dir="test/good",
              mask_dir="ground_truth/paint", train_batch_size=8, eval_batch_size=8, num_workers=0)
# anomalib's own pre-processing (256 x 256, no crop: a 32 x 32 grid, so its bank holds 1.31x the project's
# rows); with its centre crop of 224 its coreset stalled on this machine and the process died (bench/README.md)
model = Patchcore(backbone="wide_resnet50_2", layers=["layer2", "layer3"], pre_trained=False, coreset_sampling_ratio=0.1, num_neighbors=9)
engine = Engine(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, default_root_dir=str(out))
engine.fit(model=model, datamodule=data)
path = engine.export(model=model, export_type="onnx", export_root=out)  # input_size None: dynamic batch and size
print(json.dumps({"path": str(path), "bank": int(model.model.memory_bank.shape[0])}))
"""

# in anomalib's environment: per-image seconds of ``calls`` runs; anomalib 2.7's Patchcore export fixes
# the batch (to 2, with or without input_size), so a fixed batch is taken as it is, else the one asked for
ANOMALIB_TIME = """
import json, sys, time
import numpy as np, onnxruntime as ort
path, threads, batch, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
options = ort.SessionOptions(); options.intra_op_num_threads = threads
options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as on the project's sessions
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
name, first = session.get_inputs()[0].name, session.get_inputs()[0].shape[0]
batch = first if isinstance(first, int) else batch
x = np.random.default_rng(0).random((batch, 3, 224, 224), dtype=np.float32)  # the project's input size; its graph resizes to 256
session.run(None, {name: x})
times = []
for _ in range(calls):
    t = time.perf_counter(); session.run(None, {name: x}); times.append((time.perf_counter() - t) / batch)
print(json.dumps({"batch": batch, "times": times}))
"""


def make_model(tmp: Path, backbone: str, train: int, size: int) -> tuple[Path, Path, Path]:
    """A project with the backbone's model made and exported by the pipeline; (project, model folder, category root)."""
    project = tmp / backbone
    (category,) = build(project / "data/sample", 1, train, 6, size)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["run"].update(categories=[category], backbones=[backbone])
    if backbone == "wide_resnet50":
        params["backbones"][backbone]["weights"] = "random"
    params["coreset"].update(ratio=0.1, holdout_folds=0, holdout_fraction=0.0)
    params["evaluate"].update(bootstrap=0, threshold={"method": "f1_max"})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    model = Path("features/sample") / category / backbone
    for stage in ("extract", "coreset", "evaluate"):
        _cli(project, stage, "-c", category, "-b", backbone)
    scores = f"plots/sample/{backbone}/{category}/scores.csv"
    _cli(project, "export", str(model), "--out", "exported", "--format", "openvino", "--check", scores)
    return project, project / model, project / "data/sample" / category


def _cli(project: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "patchcore", *args], cwd=project, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"patchcore {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")


def sides(project: Path, model_dir: Path, threads: int) -> tuple[dict, int]:
    """name -> callable(uint8 batch); and the bank's rows."""
    import onnxruntime as ort
    import torch

    from patchcore.backbones import LayerTap
    from patchcore.engines.predict_worker import PredictWorker
    from patchcore.export.onnx_file import openvino
    from patchcore.store.model_folder import load_model

    ov = openvino("bench/latency.py")  # its telemetry off, as in every export

    card, bank = load_model(model_dir)
    s = card.backbone
    worker = PredictWorker(
        s, card.aggregation, "float32", card.channels_last, bank, card.approximate_above, "cpu", threads
    )
    mean, std = torch.tensor(s.mean).reshape(1, 3, 1, 1) * 255, torch.tensor(s.std).reshape(1, 3, 1, 1) * 255
    tap: LayerTap = worker.features.tap
    fmt = torch.channels_last if card.channels_last else torch.contiguous_format

    def normalised(x: np.ndarray) -> torch.Tensor:
        return ((torch.from_numpy(x).permute(0, 3, 1, 2).float() - mean) / std).contiguous(memory_format=fmt)

    def bare_torch(x: np.ndarray) -> None:
        with torch.inference_mode():
            tap(normalised(x))

    bare = export_bare(tap, normalised(np.zeros((1, s.crop, s.crop, 3), np.uint8)), project / "exported/backbone.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # idle onnxruntime workers spin after each run; with several sessions in one process they would
    # take the cores from the side timed next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    full_ort = ort.InferenceSession(str(project / "exported/model.onnx"), options, providers=["CPUExecutionProvider"])
    bare_ort = ort.InferenceSession(str(bare), options, providers=["CPUExecutionProvider"])
    f32 = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    full_ov = ov.Core().compile_model(str(project / "exported/model.xml"), "CPU", f32)
    bare_ov = ov.Core().compile_model(str(bare), "CPU", f32)
    return {
        "torch predict": lambda x: worker.predict(
            torch.from_numpy(x), None, card.reweight_neighbours, s.crop, card.blur_sigma
        ),
        "torch backbone": bare_torch,
        "onnxruntime file": lambda x: full_ort.run(None, {"image": x}),
        "onnxruntime backbone": lambda x: bare_ort.run(None, {"x": normalised(x).contiguous().numpy()}),
        "OpenVINO file": lambda x: full_ov(x),
        "OpenVINO backbone": lambda x: bare_ov(normalised(x).contiguous().numpy()),
    }, len(bank)


def anomalib_round(python: str, path: str, threads: int, calls: int) -> dict:
    done = subprocess.run(
        [python, "-c", ANOMALIB_TIME, path, str(threads), "1", str(calls)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"anomalib's exported model failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(run, x: np.ndarray, calls: int) -> list[float]:
    run(x)  # the first call allocates
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        run(x)
        out.append((time.perf_counter() - t) / len(x))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["efficientnet_lite2", "wide_resnet50"])
    parser.add_argument("--train", type=int, default=60, help="training images: the bank holds 10%% of their patches")
    parser.add_argument("--size", type=int, default=512, help="side of the synthetic PNGs")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per side, batch size and round")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--peer-python", help="python of the environment anomalib is installed in (WideResNet50 only)")
    args = parser.parse_args()
    import torch

    threads = torch.get_num_threads()
    print(
        f"data: one synthetic category, {args.train} training PNGs of {args.size} px; {threads} threads; per-image ms (call time / batch)"
    )
    print("| backbone | bank rows | side | batch | p50 ms | p99 ms | calls |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            project, model_dir, root = make_model(Path(tmp), backbone, args.train, args.size)
            runs, bank_rows = sides(project, model_dir, threads)
            peer = None
            if args.peer_python and backbone == "wide_resnet50":
                fit = subprocess.run(
                    [args.peer_python, "-c", ANOMALIB_FIT, str(root), str(Path(tmp) / "anomalib"), str(threads)],
                    capture_output=True,
                    text=True,
                )
                if fit.returncode != 0:
                    raise SystemExit(f"anomalib failed: {fit.stderr.strip()[-2000:]}")
                peer = json.loads(fit.stdout.strip().splitlines()[-1])
            size = yaml.safe_load((project / "params.yaml").read_text())["backbones"][backbone]["crop"]
            figures: dict[tuple[str, int], list[float]] = {}
            for _ in range(args.rounds):  # every side in every round
                for batch in args.batches:
                    x = np.random.default_rng(batch).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
                    for name, run in runs.items():
                        figures.setdefault((name, batch), []).extend(timed(run, x, args.calls))
                if peer is not None:
                    timing = anomalib_round(args.peer_python, peer["path"], threads, args.calls)
                    figures.setdefault(
                        (f"anomalib 2.7 export, onnxruntime (bank {peer['bank']})", timing["batch"]), []
                    ).extend(timing["times"])
            for (name, batch), times in figures.items():
                ms = np.array(times) * 1000
                print(
                    f"| {backbone} | {bank_rows} | {name} | {batch} | {np.percentile(ms, 50):.1f} | {np.percentile(ms, 99):.1f} | {len(ms)} |",
                    flush=True,
                )
            peers = {
                f"{name} at batch {b}": float(np.median(t))
                for (name, b), t in figures.items()
                if name.startswith("anomalib")
            }
            for batch in args.batches:
                p50 = {name: float(np.median(figures[(name, b)])) for name, b in figures if b == batch}
                line = f"{backbone}, batch {batch}: onnxruntime file / its bare backbone {p50['onnxruntime file'] / p50['onnxruntime backbone']:.2f}x"
                line += "".join(
                    f"; {n} / onnxruntime file {v / p50['onnxruntime file']:.2f}x" for n, v in peers.items()
                )
                print(line)
            for path in sorted((project / "exported").glob("*")):
                print(f"{backbone}: {path.name} {path.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
