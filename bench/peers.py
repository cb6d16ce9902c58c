"""This project against anomalib's Patchcore and patchcore-inspection on the same category,
backbone and bank size.

    python bench/peers.py --peer-python /path/to/peers-venv/bin/python [--peers anomalib inspection]
        [--inspection-src /path/to/patchcore-inspection/src] [--train 60] [--test 40] [--size 900] [--rounds 2]

Without ``--peer-python`` only the project's side runs (the tests run it so at a tiny size).

anomalib is never a dependency of the project: it lives in its own environment (for example
``python3 -m venv peers && peers/bin/pip install torch==2.14.1 torchvision==0.29.1 'anomalib==2.7.*'``),
and this script runs it there as a subprocess (``--peer-python``), alternating with the
project's side in the same rounds. patchcore-inspection (the paper's reference code) is not
on PyPI: give its checkout's ``src`` folder (``--inspection-src``) and install faiss-cpu in
the same environment; it runs with its ApproximateGreedyCoresetSampler (10%) and FaissNN.

The data: one synthetic MVTec-sized category (bench/synthetic_mvtec.py: PNGs of ``size`` px,
painted defects with masks). Both sides: WideResNet50 layer2 + layer3 with random weights
(the published ones cannot be downloaded here; speed does not depend on the values), resize
256 and centre crop 224, 1024-dim patch features, a 10% coreset, Eq. 7 with 9 neighbours, on
the CPU with the same threads.

- training: anomalib's ``Engine.fit`` (features of the training images + its coreset) against
  the project's extract (training split) + coreset;
- test phase: anomalib's ``Engine.test`` (features, scores, maps and its metrics of the test
  images) against the project's features of the test images + its evaluate (scores, maps,
  metrics, pictures), with the project's held-out scoring off (no folds, f1_max threshold)
  and no bootstrap, so both do the same work. Images/s counts test images.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_mvtec import build  # noqa: E402

# run in the peer's environment: prints {"fit": s, "test": s, "test_images": n, "image_auroc": x}
ANOMALIB = """
import json, sys, time, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
import torch
from anomalib.data import Folder
from anomalib.engine import Engine
from anomalib.models import Patchcore
root, threads = Path(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
data = Folder(name="bench", root=root, normal_dir="train/good", abnormal_dir="test/paint", normal_test_dir="test/good",
              mask_dir="ground_truth/paint", train_batch_size=8, eval_batch_size=8, num_workers=0)
model = Patchcore(backbone="wide_resnet50_2", layers=["layer2", "layer3"], pre_trained=False, coreset_sampling_ratio=0.1, num_neighbors=9)
engine = Engine(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, default_root_dir=str(root.parent / "anomalib"))
t0 = time.perf_counter(); engine.fit(model=model, datamodule=data); fit = time.perf_counter() - t0
t0 = time.perf_counter(); results = engine.test(model=model, datamodule=data); test = time.perf_counter() - t0
n = len(list((root / "test").rglob("*.png")))
print(json.dumps({"fit": fit, "test": test, "test_images": n, "image_auroc": float(results[0].get("image_AUROC", float("nan")))}))
"""


# the same for patchcore-inspection, its src folder as argv[3]
INSPECTION = """
import json, sys, time, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[3])
import torch, torchvision
from sklearn.metrics import roc_auc_score
import patchcore.common, patchcore.patchcore, patchcore.sampler
from patchcore.datasets.mvtec import DatasetSplit, MVTecDataset
root, threads = Path(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
def loader(split):
    data = MVTecDataset(str(root.parent), root.name, resize=256, imagesize=224, split=split)
    return torch.utils.data.DataLoader(data, batch_size=8, shuffle=False, num_workers=0)
cpu = torch.device("cpu")
torch.manual_seed(0)
backbone = torchvision.models.wide_resnet50_2(weights=None)
backbone.name, backbone.seed = "wideresnet50", 0
backbone.eval()  # before load: its shape probe would otherwise move every BatchNorm's statistics (bench/reference_wrn50.py)
model = patchcore.patchcore.PatchCore(cpu)
model.load(backbone=backbone, layers_to_extract_from=["layer2", "layer3"], device=cpu, input_shape=(3, 224, 224),
           pretrain_embed_dimension=1024, target_embed_dimension=1024, patchsize=3,
           featuresampler=patchcore.sampler.ApproximateGreedyCoresetSampler(0.1, cpu), anomaly_score_num_nn=1,
           nn_method=patchcore.common.FaissNN(False, threads))
t0 = time.perf_counter(); model.fit(loader(DatasetSplit.TRAIN)); fit = time.perf_counter() - t0
t0 = time.perf_counter(); scores, _, labels, _ = model.predict(loader(DatasetSplit.TEST)); test = time.perf_counter() - t0
print(json.dumps({"fit": fit, "test": test, "test_images": len(scores), "image_auroc": float(roc_auc_score(labels, scores))}))
"""


def peer_round(python: str, code: str, args: list[str], name: str) -> dict:
    done = subprocess.run([python, "-c", code, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def project_round(project: Path, category: str) -> dict:
    """The project's stages in this process, timed as the peer's phases are (imports before the clock)."""
    import torch

    from patchcore import backbones, config
    from patchcore.backbones import LayerTap, PatchFeatures, stream
    from patchcore.datasets.layout import list_split
    from patchcore.pipeline import extraction, memory_bank
    from patchcore.store.model_folder import ModelFolder
    from stages import evaluate

    params = config.load(project / "params.yaml")
    settings = params.backbone("wide_resnet50")
    root = project / "data/sample" / category
    folder = ModelFolder.of("sample", category, "wide_resnet50")
    meta = {"dataset": "sample", "category": category, "backbone": "wide_resnet50", "arch": settings.arch}
    t0 = time.perf_counter()
    loaded = backbones.build(settings)
    extraction.run(root, folder.root, settings, loaded, params.extract, params.aggregation, meta)
    extracted = time.perf_counter() - t0
    t0 = time.perf_counter()
    memory_bank.run(folder.root / "train.h5", folder.root / "bank.h5", params.coreset)
    selected = time.perf_counter() - t0
    # the test split's features, as the stage computes them (its share of the extract above)
    test = list_split(root, "test")
    features = PatchFeatures(
        LayerTap(loaded.model, settings.layers), settings, params.aggregation, params.extract.precision
    )
    backbones.place(loaded.model, torch.device("cpu"), params.extract.channels_last)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in stream.host_batches([root / s.path for s in test], features, torch.device("cpu"), params.extract):
            pass
    test_features = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate.main(params, category, "wide_resnet50")
    scored = time.perf_counter() - t0
    record = json.loads((project / f"metrics/sample/wide_resnet50/{category}.json").read_text())
    train_features = extracted - test_features
    return {
        "fit": train_features + selected,
        "test": test_features + scored,
        "test_images": len(test),
        "image_auroc": record["image_auroc"],
    }


def make_project(tmp: Path, train: int, test: int, size: int) -> tuple[Path, str, Path]:
    project = tmp / "project"
    (category,) = build(project / "data/sample", 1, train, test, size)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["run"].update(categories=[category], backbones=["wide_resnet50"])
    params["backbones"]["wide_resnet50"]["weights"] = "random"
    params["coreset"].update(ratio=0.1, holdout_folds=0, holdout_fraction=0.0)
    params["evaluate"].update(bootstrap=0, reweight_neighbours=9, threshold={"method": "f1_max"})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project, category, project / "data/sample" / category


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--peer-python", help="python of the environment anomalib is installed in (without it: the project's side only)"
    )
    parser.add_argument("--peers", nargs="+", default=["anomalib"], choices=["anomalib", "inspection"])
    parser.add_argument("--inspection-src", help="patchcore-inspection's src folder (for --peers inspection)")
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--test", type=int, default=40)
    parser.add_argument("--size", type=int, default=900)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import os

    import torch

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        project, category, root = make_project(Path(tmp), args.train, args.test, args.size)
        os.chdir(project)  # the stages write under the project, as `dvc repro` runs them
        print(
            f"data: synthetic category, {args.train} train and {args.test} test PNGs of {args.size} px; WideResNet50 (random weights); 10% coreset; {threads} threads"
        )
        print("| round | side | training s | test phase s | test images/s | image AUROC |")
        print("|---|---|---|---|---|---|")
        peers = args.peers if args.peer_python else []
        rows: dict[str, list[dict]] = {side: [] for side in [*peers, "project"]}
        for r in range(args.rounds):
            for side in rows:
                if side == "project":
                    row = project_round(project, category)
                elif side == "anomalib":
                    row = peer_round(args.peer_python, ANOMALIB, [str(root), str(threads)], side)
                else:
                    row = peer_round(
                        args.peer_python, INSPECTION, [str(root), str(threads), str(args.inspection_src)], side
                    )
                rows[side].append(row)
                rate = row["test_images"] / row["test"]
                print(
                    f"| {r} | {side} | {row['fit']:.1f} | {row['test']:.1f} | {rate:.2f} | {row['image_auroc']:.4f} |",
                    flush=True,
                )
        for peer in peers:
            ratio = statistics.median(a["test"] / p["test"] for a, p in zip(rows[peer], rows["project"]))
            train = statistics.median(a["fit"] / p["fit"] for a, p in zip(rows[peer], rows["project"]))
            print(
                f"project vs {peer} (median of rounds): test phase {ratio:.2f}x its images/s; training {train:.2f}x faster"
            )


if __name__ == "__main__":
    main()
