"""Devices and precision through the stages: recorded in every output, checked where they matter."""

import csv
import json
import shutil
from pathlib import Path

import h5py
import pytest
import torch

from helpers import assert_usage_error, edit_params, lite0_model, run_cli

MODEL = "features/sample/hazelnut_toy/efficientnet_lite0"
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU where there is none")


@pytest.fixture(scope="module")
def half(sample_root, tmp_path_factory):
    """A Lite0 model whose features were computed under float16 autocast."""
    return lite0_model(
        sample_root,
        tmp_path_factory.mktemp("half"),
        (6, 2, 3),
        **{"extract.precision": "float16", "coreset.holdout_fraction": 0.2, "coreset.holdout_folds": 0},
    )


def test_precision_and_devices_are_recorded_in_every_output(half):
    here = "cuda" if torch.cuda.is_available() else "cpu"
    for name in ("train.h5", "test.h5", "bank.h5"):
        with h5py.File(half / MODEL / name) as f:
            assert f.attrs["precision"] == "float16" and json.loads(f.attrs["fingerprint"])["precision"] == "float16"
            assert str(f.attrs["extract_device"]).startswith(here)
    with h5py.File(half / MODEL / "bank.h5") as f:
        assert f.attrs["coreset_device"] == "cpu"  # a bank this small is selected on the CPU even beside a GPU
    record = json.loads((half / "metrics/sample/efficientnet_lite0/hazelnut_toy.json").read_text())
    assert record["precision"] == "float16"
    assert record["devices"]["extract"].startswith(here) and record["devices"]["evaluate"].startswith(here)
    assert json.loads((half / MODEL / "model.json").read_text())["precision"] == "float16"


def test_predict_computes_in_the_models_precision(half, tmp_path):
    root = half / "data/sample/hazelnut_toy"
    result = run_cli(
        "predict", str(half / MODEL), str(root / "test"), "--out", str(tmp_path), "--device", "cpu", cwd=half
    )
    assert result.returncode == 0, result.stderr
    with open(half / "plots/sample/efficientnet_lite0/hazelnut_toy/scores.csv") as f:
        expected = {row["image"]: float(row["score"]) for row in csv.DictReader(f)}
    lines = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert {str(Path(x["image"]).relative_to(root)): x["score"] for x in lines} == pytest.approx(expected, rel=1e-5)
    assert {x["device"] for x in lines} == {"cpu"}


def test_evaluate_refuses_features_of_another_precision(half, tmp_path):
    project = tmp_path / "p"
    shutil.copytree(half, project)
    edit_params(project, **{"extract.precision": "float32"})
    result = run_cli("evaluate", "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=project)
    assert_usage_error(result, "precision: 'float32' in params.yaml vs 'float16'")


@NO_GPU
@pytest.mark.parametrize("stage", ["extract", "evaluate"])
def test_asking_for_a_gpu_where_there_is_none_is_one_line(half, tmp_path, stage):
    # coreset resolves its device with the same call (tests/core/test_gpu_paths.py)
    project = tmp_path / "p"
    shutil.copytree(half, project)
    edit_params(project, **{f"{stage}.device": "cuda"})
    result = run_cli(stage, "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=project)
    assert_usage_error(result, f"{stage}.device: 'cuda' asks for a GPU but torch sees none", "'auto' or 'cpu'")
    assert not list(project.rglob("*.tmp"))


@NO_GPU
def test_predict_on_a_missing_gpu_is_one_line(half, tmp_path):
    image = half / "data/sample/hazelnut_toy/test/good"
    result = run_cli(
        "predict", str(half / MODEL), str(image), "--out", str(tmp_path / "out"), "--device", "cuda:0", cwd=half
    )
    assert_usage_error(result, "--device: 'cuda:0' asks for a GPU")
    assert not (tmp_path / "out").exists()
