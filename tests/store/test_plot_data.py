"""Plot data DVC draws, against definitions written here: average precision, the PR points, the confusion columns."""

import csv
import json

import numpy as np

from patchcore.core.localization import count_pixels
from patchcore.core.metrics import image_ap
from patchcore.store import plot_data

from helpers import REPO


def _operating_points(labels, scores):
    """(recall, precision) at every distinct score taken as the threshold (score >= t is flagged)."""
    points = []
    for t in np.unique(scores)[::-1]:
        flagged = scores >= t
        tp = np.sum(flagged & (labels == 1))
        points.append((tp / labels.sum(), tp / flagged.sum()))
    return points


def test_image_ap_is_the_stepwise_sum_over_thresholds_and_pr_rows_are_its_points():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60) + 0.4 * labels, 1)  # ties on purpose
    points = _operating_points(labels, scores)
    expected = sum((r - r0) * p for (r0, _), (r, p) in zip([(0.0, 1.0), *points], points))
    assert abs(image_ap(labels, scores) - expected) < 1e-12
    rows = plot_data.image_curves(labels, scores)["pr"]
    got = {(row["recall"], row["precision"]) for row in rows}
    assert {(round(r, 6), round(p, 6)) for r, p in points} <= got and len(
        got - {(round(r, 6), round(p, 6)) for r, p in points}
    ) <= 1
    assert [row["recall"] for row in rows] == sorted(row["recall"] for row in rows)  # read left to right


def test_pro_points_run_from_origin_to_one_one_and_only_rise():
    rng = np.random.default_rng(5)
    masks = rng.random((2, 16, 16)) < 0.15
    maps = np.round(rng.random((2, 16, 16)) + masks * 0.5, 2).astype(np.float32)
    rows = plot_data.pro_points(count_pixels(masks, maps))
    fpr, pro = np.array([r["fpr"] for r in rows]), np.array([r["pro"] for r in rows])
    assert (fpr[0], pro[0]) == (0.0, 0.0) and (fpr[-1], pro[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= 0)
    assert plot_data.pro_points(None) == [] and plot_data.image_curves(np.zeros(4), np.arange(4.0)) == {
        "roc": [],
        "pr": [],
    }


def test_scores_csv_carries_what_the_confusion_template_counts(tmp_path):
    labels, scores = np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.2, 0.8])
    out = tmp_path / "scores.csv"
    plot_data.write_scores(out, ["a", "b", "c", "d"], labels, scores, [False, True, False, True])
    rows = list(csv.DictReader(out.open()))
    assert [(r["actual"], r["predicted"], r["anomalous"]) for r in rows] == [
        ("good", "good", "0"),
        ("defective", "anomalous", "1"),
        ("defective", "good", "0"),
        ("good", "anomalous", "1"),
    ]
    plot_data.write_scores(out, ["a"], labels[:1], scores[:1], None)
    assert next(csv.DictReader(out.open()))["predicted"] == "no threshold"


def test_the_committed_overlay_holds_each_backbones_curve_tagged():
    for stem, (x, y) in plot_data.CURVES.items():
        overlay = json.loads((REPO / f"plots/overlay/{stem}/hazelnut_surface.json").read_text())[stem]
        own = json.loads((REPO / f"plots/sample/efficientnet_lite2/hazelnut_surface/{stem}.json").read_text())[stem]
        assert overlay == [{"backbone": "efficientnet_lite2", x: r[x], y: r[y]} for r in own] and len(own) > 2
