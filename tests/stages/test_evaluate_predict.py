"""evaluate's intervals, threshold and pictures, and predict against evaluate."""

import csv
import json
import shutil

import pytest

from helpers import edit_params, lite0_model, run_cli


@pytest.fixture(scope="module")
def trained(sample_root, tmp_path_factory):
    project = tmp_path_factory.mktemp("evalproject")
    lite0_model(
        sample_root,
        project,
        (10, 3, 5),
        **{"coreset.ratio": 0.25, "coreset.holdout_fraction": 0.2, "coreset.holdout_folds": 0},
    )
    return project


def test_evaluate_reports_intervals_threshold_and_pictures(trained):
    record = json.loads((trained / "metrics/sample/efficientnet_lite0/hazelnut_toy.json").read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        lo, hi = record["ci95"][key]
        assert lo <= record[key] <= hi
    assert 0.5 < record["aupro"] <= 1.0
    assert record["reweighting"] == {"on": True, "neighbours": 9}
    t = record["threshold_metrics"]
    assert t["holdout_images"] == 2 and t["threshold"] > 0 and 0 <= t["f1"] <= 1
    plots = trained / "plots/sample/efficientnet_lite0/hazelnut_toy"
    roc = json.loads((plots / "roc.json").read_text())["roc"]
    assert roc[0] == {"fpr": 0.0, "tpr": 0.0} and roc[-1] == {"fpr": 1.0, "tpr": 1.0}
    for png in (plots / "roc.png", trained / "pictures/sample/efficientnet_lite0/hazelnut_toy/maps.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_equals_evaluate(trained, tmp_path):
    root = trained / "data/sample/hazelnut_toy"
    model = trained / "features/sample/hazelnut_toy/efficientnet_lite0"
    result = run_cli("predict", str(model), str(root / "test"), "--out", str(tmp_path / "out"), cwd=trained)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(x) for x in (tmp_path / "out/predictions.jsonl").read_text().splitlines()]
    with open(trained / "plots/sample/efficientnet_lite0/hazelnut_toy/scores.csv") as f:
        expected = {row["image"]: float(row["score"]) for row in csv.DictReader(f)}
    got = {str(__import__("pathlib").Path(x["image"]).relative_to(root)): x["score"] for x in lines}
    assert got.keys() == expected.keys()
    for image, score in expected.items():
        assert got[image] == pytest.approx(score, rel=1e-5), image
    card = json.loads((model / "model.json").read_text())
    threshold, (low, high) = card["threshold"], card["score_range"]
    for x in lines:
        assert x["verdict"] == ("anomalous" if x["score"] >= threshold else "good")
        # min-max against the held-out good scores, 0.5 at the threshold, clamped to [0, 1]
        assert x["normalised_score"] == pytest.approx(
            min(1.0, max(0.0, (x["score"] - threshold) / (high - low) + 0.5)), abs=1e-6
        )
        assert (tmp_path / "out/heatmaps" / __import__("pathlib").Path(x["heatmap"]).name).is_file()


def test_predict_scores_the_rest_when_one_image_is_unreadable(trained, tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    shutil.copy(trained / "data/sample/hazelnut_toy/test/good/04.jpg", folder / "a.jpg")
    (folder / "b.jpg").write_bytes(b"not a jpeg")
    model = trained / "features/sample/hazelnut_toy/efficientnet_lite0"
    result = run_cli("predict", str(model), str(folder), "--out", str(tmp_path / "out"), cwd=trained)
    assert result.returncode == 1
    assert "b.jpg" in result.stderr and "Traceback" not in result.stderr
    assert len((tmp_path / "out/predictions.jsonl").read_text().splitlines()) == 1


def test_predict_refuses_other_settings_and_broken_models(trained, tmp_path):
    model = trained / "features/sample/hazelnut_toy/efficientnet_lite0"
    image = trained / "data/sample/hazelnut_toy/test/good/04.jpg"
    changed = tmp_path / "params.yaml"
    shutil.copy(trained / "params.yaml", changed)
    edit_params(tmp_path, **{"backbones.efficientnet_lite0.crop": 200, "backbones.efficientnet_lite0.resize": 200})
    result = run_cli(
        "predict", str(model), str(image), "--params", str(changed), "--out", str(tmp_path / "out"), cwd=trained
    )
    # the model folder is self-contained: another params.yaml is reported, not an error
    assert result.returncode == 0 and "params.yaml differs" in result.stderr and "crop 200" in result.stderr
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "model.json").write_text("{not json")
    result = run_cli("predict", str(broken), str(image), cwd=trained)
    assert result.returncode == 2 and "corrupted model file" in result.stderr
    (broken / "model.json").unlink()
    result = run_cli("predict", str(broken), str(image), cwd=trained)
    assert result.returncode == 2 and "model.json not found" in result.stderr


def test_predict_refuses_another_aggregation_and_a_model_card_that_does_not_validate(trained, tmp_path):
    model = trained / "features/sample/hazelnut_toy/efficientnet_lite0"
    image = trained / "data/sample/hazelnut_toy/test/good/04.jpg"
    card = json.loads((model / "model.json").read_text())
    assert card["aggregation"] == {"patchsize": 3, "border": "zeros", "layer_weighting": "equal"}
    changed = tmp_path / "params.yaml"
    shutil.copy(trained / "params.yaml", changed)
    edit_params(tmp_path, **{"aggregation.border": "valid"})
    result = run_cli(
        "predict", str(model), str(image), "--params", str(changed), "--out", str(tmp_path / "out"), cwd=trained
    )
    assert result.returncode == 0 and "params.yaml differs" in result.stderr and "border 'valid'" in result.stderr
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "model.json").write_text(json.dumps({**card, "treshold": 1.0}))
    result = run_cli("predict", str(broken), str(image), cwd=trained)
    assert (
        result.returncode == 2
        and "unknown key 'treshold'" in result.stderr
        and "did you mean 'threshold'?" in result.stderr
    )


def test_full_size_metrics_are_those_of_the_masks_evaluate_writes(trained):
    """The record's segmentation F1 is the F1 of the very masks evaluate writes (at each image's own size) against
    the data set's ground truth; the record names the images' sizes and the geometry it ran with."""
    import numpy as np
    from PIL import Image
    from sklearn.metrics import f1_score

    record = json.loads((trained / "metrics/sample/efficientnet_lite0/hazelnut_toy.json").read_text())
    regions = json.loads((trained / "plots/sample/efficientnet_lite0/hazelnut_toy/regions.json").read_text())
    root = trained / "data/sample/hazelnut_toy"
    truth, flagged = [], []
    for entry in regions["images"]:
        image = entry["image"]
        if not image.startswith("test/good/") and not (root / _truth_of(image)).is_file():
            continue  # a defect without a mask takes no part in pixel metrics
        with Image.open(root / image) as im:
            size = (im.height, im.width)
        gt = (
            np.zeros(size, bool)
            if image.startswith("test/good/")
            else np.asarray(Image.open(root / _truth_of(image))) > 0
        )
        written = np.asarray(Image.open(trained / entry["mask"])) > 0
        assert written.shape == gt.shape == size
        truth.append(gt.ravel())
        flagged.append(written.ravel())
    expected = f1_score(np.concatenate(truth), np.concatenate(flagged))
    full = record["full_size"]
    assert full["seg_f1"] == pytest.approx(expected, abs=1e-6)
    assert set(full) == {"pixel_auroc", "aupro", "aupro_005", "seg_f1"} and 0.5 < full["aupro"] <= 1.0
    assert 0.0 <= record["aupro_005"] <= 1.0 and 0.0 <= full["aupro_005"] <= 1.0
    import yaml

    lite0 = yaml.safe_load((trained / "params.yaml").read_text())["backbones"]["efficientnet_lite0"]
    assert record["geometry"] == {"name": "resize_crop", "resize": lite0["resize"], "crop": lite0["crop"]}
    widths, heights = record["image_size"]["width"], record["image_size"]["height"]
    assert widths[0] <= widths[1] and heights[0] <= heights[1] and widths[0] > 0


def _truth_of(image: str) -> str:
    """test/<defect>/<name>.<ext> -> ground_truth/<defect>/<name>.png (this sample's layout)."""
    _, defect, name = image.split("/")
    return f"ground_truth/{defect}/{name.rsplit('.', 1)[0]}.png"
