"""The three threshold methods side by side, before and after k-fold scoring of the held-out images.

    python bench/thresholds.py [--project .] [--category hazelnut_surface] [--backbone efficientnet_lite2] [--fixed 30]

Runs the project's own coreset and evaluate commands in a scratch copy of ``--project`` (its
params.yaml, the category's data and extracted features; nothing of the project is written)
with only these keys changed:
- before: ``coreset.holdout_fraction: 0.1, holdout_folds: 0`` (10% of the training images kept
  out of the bank; the threshold from their scores);
- after: ``coreset.holdout_folds: 5, holdout_fraction: 0`` (every training image scored against
  a coreset of the other four fifths; the bank keeps all images);
and for each, ``evaluate.threshold`` set to holdout_quantile, f1_max and fixed. Prints one
Markdown row per run: threshold, precision, recall, F1 and false-reject rate on the test set,
and how many scores the threshold came from.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
HOLDOUT = {
    "before (10% split)": {"holdout_fraction": 0.1, "holdout_folds": 0},
    "after (5-fold)": {"holdout_fraction": 0.0, "holdout_folds": 5},
}


def _stage(project: Path, stage: str, category: str, backbone: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "patchcore", stage, "-c", category, "-b", backbone],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if result.returncode != 0:
        raise SystemExit(f"{stage} failed in {project}:\n{result.stderr[-2000:]}")


def rows(source: Path, category: str, backbone: str, fixed: float) -> list[dict]:
    params = yaml.safe_load((source / "params.yaml").read_text())
    dataset = params["run"]["dataset"]
    features = source / "features" / dataset / category / backbone
    with tempfile.TemporaryDirectory(prefix="thresholds.") as scratch:
        project = Path(scratch)
        shutil.copytree(source / "data" / dataset / category, project / "data" / dataset / category)
        (project / features.relative_to(source)).mkdir(parents=True)
        for name in ("train.h5", "test.h5"):
            shutil.copy(features / name, project / features.relative_to(source) / name)
        out = []
        for label, holdout in HOLDOUT.items():
            params["coreset"].update(holdout)
            params["run"].update({"categories": [category], "backbones": [backbone]})
            for method in ("holdout_quantile", "f1_max", "fixed"):
                params["evaluate"]["threshold"] = {"method": method, **({"value": fixed} if method == "fixed" else {})}
                (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
                if method == "holdout_quantile":
                    _stage(project, "coreset", category, backbone)
                _stage(project, "evaluate", category, backbone)
                record = json.loads((project / "metrics" / dataset / backbone / f"{category}.json").read_text())
                out.append({"holdout": label, "image_auroc": record["image_auroc"], **record["threshold_metrics"]})
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--project", type=Path, default=REPO, help="a project where 'dvc repro' has run (data and features present)"
    )
    parser.add_argument("--category", default="hazelnut_surface")
    parser.add_argument("--backbone", default="efficientnet_lite2")
    parser.add_argument("--fixed", type=float, default=30.0, help="the value of the fixed threshold")
    args = parser.parse_args()
    print(f"{args.category} x {args.backbone}; data and weights as in {args.project / 'params.yaml'}")
    print(
        "| held-out scores | method | threshold [95% CI] | scores it came from | precision | recall | F1 | false-reject rate [95% CI] | image AUROC |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows(args.project.resolve(), args.category, args.backbone, args.fixed):
        frr = (
            "-"
            if r["false_reject_rate"] is None
            else f"{r['false_reject_rate']:.3f} [{r['false_reject_ci95'][0]:.3f}, {r['false_reject_ci95'][1]:.3f}]"
        )
        scores = (
            "test labels"
            if r["method"] == "f1_max"
            else ("params.yaml" if r["method"] == "fixed" else str(r["scores_from"]))
        )
        ends = ["open" if v is None else f"{v:.3f}" for v in r.get("threshold_ci95", [])]
        threshold = f"{r['threshold']:.3f}" + (f" [{ends[0]}, {ends[1]}]" if ends else "")
        print(
            f"| {r['holdout']} | {r['method']} | {threshold} | {scores} | {r['precision']} | {r['recall']} | {r['f1']} | {frr} | {r['image_auroc']} |"
        )


if __name__ == "__main__":
    main()
