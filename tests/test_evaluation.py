"""AUPRO, bootstrap intervals, Eq. 7 reweighting, threshold, pictures and predict."""

import csv
import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from conftest import REPO, edit_params, run_cli, small_copy
from stages.localization import aupro, auroc_from_counts, count_pixels, region_shares
from stages.metrics import bootstrap, stratified_resamples
from stages.scoring import NearestBank, reweighted_image_score


def test_aupro_hand_worked_example():
    # one row of 7 pixels: region A = pixel 1, region B = pixels 3-5, normal pixels 0, 2, 6
    mask = np.array([[[0, 1, 0, 1, 1, 1, 0]]], dtype=bool)
    # threshold 9 finds A (PRO 1/2) at FPR 0; B only appears at threshold 1, where FPR is already 1/3;
    # so PRO = 1/2 on all of (0, 0.3]: area 0.15, normalised 0.5. (Pixel recall would say 1/4.)
    scores = np.array([[[2, 9, 0, 1, 1, 1, -1]]], dtype=np.float32)
    c = count_pixels(mask, scores)
    assert aupro(c.neg.sum(0), region_shares(c.regions), 0.3) == pytest.approx(0.5)
    # with B scored highest too, both regions are found before any false positive: perfect
    scores2 = np.array([[[2, 9, 0, 5, 5, 5, -1]]], dtype=np.float32)
    c2 = count_pixels(mask, scores2)
    assert aupro(c2.neg.sum(0), region_shares(c2.regions), 0.3) == pytest.approx(1.0)
    # regions are counted per connected component: pixels 3-5 are one region, not three
    assert len(c.regions) == 2 and sorted(c.regions.sum(1)) == [1, 3]


def test_aupro_interpolates_inside_a_segment():
    # a tie: the defect pixel and one normal pixel share score 1, so the curve jumps along a
    # slope from (0, 0) to (0.5, 1); PRO(0.3) = 0.6, area 0.3 * 0.6 / 2 = 0.09, normalised 0.3
    mask = np.array([[[1, 0, 0]]], dtype=bool)
    scores = np.array([[[1, 1, 0]]], dtype=np.float32)
    c = count_pixels(mask, scores)
    assert aupro(c.neg.sum(0), region_shares(c.regions), 0.3) == pytest.approx(0.3)


def test_binned_pixel_auroc_is_exact_with_few_values_and_close_with_many():
    rng = np.random.default_rng(0)
    masks = rng.random((4, 20, 20)) < 0.2
    few = np.round(rng.random((4, 20, 20)) + masks * 0.3, 1).astype(np.float32)
    c = count_pixels(masks, few)
    assert auroc_from_counts(c.neg.sum(0), c.pos.sum(0)) == pytest.approx(roc_auc_score(masks.ravel(), few.ravel()), abs=1e-12)
    many = (rng.random((4, 20, 20)) + masks * 0.3).astype(np.float32)
    c = count_pixels(masks, many, bins=200)
    assert auroc_from_counts(c.neg.sum(0), c.pos.sum(0)) == pytest.approx(roc_auc_score(masks.ravel(), many.ravel()), abs=5e-3)


def _toy_test_set(copies: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.tile(np.array([0] * 6 + [1] * 6), copies)
    scores = labels * 0.6 + rng.random(len(labels))
    masks = np.zeros((len(labels), 8, 8), dtype=bool)
    masks[labels == 1, 2:5, 2:5] = True
    maps = rng.random(masks.shape).astype(np.float32) + masks * 0.5
    return labels, scores, masks, maps


def test_bootstrap_interval_contains_estimate_and_narrows_with_more_images():
    widths = []
    for copies in (1, 4):
        labels, scores, masks, maps = _toy_test_set(copies)
        counts = count_pixels(masks, maps)
        ci = bootstrap(labels, scores, np.arange(len(labels)), counts, 1000, 0, 0.3)
        point = roc_auc_score(labels, scores)
        assert ci["image_auroc"][0] <= point <= ci["image_auroc"][1]
        pix = auroc_from_counts(counts.neg.sum(0), counts.pos.sum(0))
        assert ci["pixel_auroc"][0] <= pix <= ci["pixel_auroc"][1]
        pro = aupro(counts.neg.sum(0), region_shares(counts.regions), 0.3)
        assert ci["aupro"][0] <= pro <= ci["aupro"][1]
        widths.append(ci["image_auroc"][1] - ci["image_auroc"][0])
    assert widths[1] < 0.7 * widths[0]


def test_resamples_are_stratified_and_seeded():
    labels = np.array([0, 0, 0, 1, 1])
    a, b = stratified_resamples(labels, 50, 3), stratified_resamples(labels, 50, 3)
    assert np.array_equal(a, b)
    assert all((labels[r] == 0).sum() == 3 and (labels[r] == 1).sum() == 2 for r in a)


def test_reweighting_matches_equation_7():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(50, 4)).astype(np.float32)
    patches = rng.normal(size=(6, 4)).astype(np.float32)
    nearest = NearestBank(bank)
    dist, nn = nearest.search(patches, 1)
    got = reweighted_image_score(nearest, patches, dist[:, 0], nn[:, 0], b=5)
    # direct: the most anomalous test patch, its nearest bank patch m*, and m*'s 5 nearest bank patches
    d_all = np.linalg.norm(patches[:, None] - bank[None], axis=2)
    j = int(np.argmax(d_all.min(1)))
    m_star = int(np.argmin(d_all[j]))
    support = np.argsort(np.linalg.norm(bank - bank[m_star], axis=1))[:5]
    s_star = d_all[j, m_star]
    expected = (1 - np.exp(s_star) / np.exp(d_all[j, support]).sum()) * s_star
    assert got == pytest.approx(expected, rel=1e-5)
    assert 0 < got < s_star
    assert reweighted_image_score(nearest, patches, dist[:, 0], nn[:, 0], b=0) == pytest.approx(s_star, rel=1e-6)


@pytest.fixture(scope="module")
def trained(sample_root, tmp_path_factory):
    project = tmp_path_factory.mktemp("evalproject")
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    small_copy(sample_root, project / "data/sample/hazelnut_toy", train=10, good=3, defective=5)
    edit_params(project, **{"run.backbones": ["efficientnet_lite0"], "coreset.ratio": 0.25, "coreset.holdout_fraction": 0.2})
    for stage in ("extract", "coreset", "evaluate"):
        result = run_cli(stage, "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=project)
        assert result.returncode == 0, result.stderr
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
    for png in ("roc.png", "maps.png"):
        assert (plots / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    threshold = json.loads((model / "model.json").read_text())["threshold"]
    for x in lines:
        assert x["verdict"] == ("anomalous" if x["score"] >= threshold else "good")
        assert x["normalised_score"] == pytest.approx(x["score"] / threshold, rel=1e-5)
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
    result = run_cli("predict", str(model), str(image), "--params", str(changed), cwd=trained)
    assert result.returncode == 2 and "other settings" in result.stderr and "crop" in result.stderr
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "model.json").write_text("{not json")
    result = run_cli("predict", str(broken), str(image), cwd=trained)
    assert result.returncode == 2 and "corrupted model file" in result.stderr
    (broken / "model.json").unlink()
    result = run_cli("predict", str(broken), str(image), cwd=trained)
    assert result.returncode == 2 and "model.json not found" in result.stderr
