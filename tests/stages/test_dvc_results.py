"""What DVC users see: every category's metrics in `dvc exp show`, and the plots `dvc plots diff` draws."""

import json
import subprocess

import yaml

from helpers import REPO


def _dvc_json(*args: str):
    done = subprocess.run(["dvc", *args, "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_exp_show_lists_every_categorys_metrics():
    run = yaml.safe_load((REPO / "params.yaml").read_text())["run"]
    workspace = _dvc_json("exp", "show", "--no-fetch", "-n", "1")[0]
    metrics = workspace["data"]["metrics"]
    for backbone in run["backbones"]:
        for category in run["categories"]:
            record = metrics[f"metrics/{run['dataset']}/{backbone}/{category}.json"]["data"]
            assert record["category"] == category and record["bank_size"] > 0  # dvc leaves out nulls and lists
    assert metrics["metrics/sample/efficientnet_lite2/hazelnut_surface.json"]["data"]["image_ap"] > 0.9
    assert "metrics/summary.json" in metrics


def test_plots_overlay_the_backbones_and_draw_pr_pro_and_confusion(tmp_path):
    ids = set(_dvc_json("plots", "show", "--split", "--out", str(tmp_path))["data"])  # image copies go to tmp_path
    for curve in ("roc", "pr", "pro"):
        assert (
            f"dvc.yaml::plots/overlay/{curve}/hazelnut_surface.json" in ids
            or f"plots/overlay/{curve}/hazelnut_surface.json" in ids
        ), sorted(ids)
    for name in ("pr.json", "pro.json", "scores.csv"):
        assert f"plots/sample/efficientnet_lite2/hazelnut_surface/{name}" in ids, sorted(ids)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())
    confusion = [
        p
        for p in stages["stages"]["evaluate"]["plots"]
        if isinstance(p, dict) and any(k.endswith("scores.csv") for k in p)
    ]
    assert next(iter(confusion[0].values()))["template"] == "confusion"
