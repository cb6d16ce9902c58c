"""The paper's architecture exported: WideResNet50 layer2 + layer3 (seeded random weights), a few images."""

import json
import shutil

from helpers import REPO, edit_params, run_cli, run_stages, small_copy


def test_a_wide_resnet50_model_exports_with_evaluates_scores(sample_root, tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    small_copy(sample_root, tmp_path / "data/sample/hazelnut_toy", train=4, good=1, defective=2)
    edit_params(
        tmp_path,
        **{
            "run.backbones": ["wide_resnet50"],
            "backbones.wide_resnet50.weights": "random",
            "coreset.holdout_folds": 0,
            "coreset.holdout_fraction": 0.25,
            "evaluate.bootstrap": 10,
        },
    )
    run_stages(tmp_path, "extract", "coreset", "evaluate", backbone="wide_resnet50")
    scores = "plots/sample/wide_resnet50/hazelnut_toy/scores.csv"
    result = run_cli(
        "export",
        "features/sample/hazelnut_toy/wide_resnet50",
        "--out",
        "exported",
        "--format",
        "openvino",
        "--check",
        scores,
        "--record",
        "r.json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["weights"].startswith("RANDOM") and record["parity"]["images"] == 3
    ort, ov = record["parity"]["runtimes"]
    assert ort["passed"] and ort["tolerance"] == 1e-4 and ov["passed"] and ov["tolerance"] == 1e-3, record
    assert (
        "onnxruntime (CPU): largest relative error" in result.stdout
        and "OpenVINO (CPU): largest relative error" in result.stdout
    )
