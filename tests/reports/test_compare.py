"""`patchcore compare` on the real `dvc exp show --json` of the train-fraction grid (tests/reports/exp_show.json:
the four grid points on hazelnut_surface and one failed experiment, trimmed), with each experiment's
metrics committed to a scratch git repository as dvc exp commits them."""

import copy
import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from patchcore.apps.reports import compare
from patchcore.errors import UsageError

from helpers import assert_usage_error, run_cli

ANSWER = json.loads((Path(__file__).parent / "exp_show.json").read_text())
CATEGORY = "hazelnut_surface"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def _runs(answer):
    for group in answer[1]["experiments"]:
        yield group, group["revs"][0]


@pytest.fixture
def grid(tmp_path, monkeypatch):
    """The answer with every experiment's rev replaced by a commit of its metrics files (intervals included)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    answer = copy.deepcopy(ANSWER)
    for _, run in _runs(answer):
        for path, entry in run["data"]["metrics"].items():
            auroc = entry["data"]["image_auroc"]
            record = {
                "image_auroc": auroc,
                "ci95": {"image_auroc": [round(auroc - 0.01, 6), 1.0]},
                "train_images": entry["data"]["train_images"],
            }
            record |= {
                "weights": f"weights of {path.split('/')[2]}",
                "data": {"source": "bundled", "location": "data/bundled/hazelnut_surface.tar.gz"},
            }
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text(json.dumps(record))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", run["name"], "--allow-empty")
        run["rev"] = _git(repo, "rev-parse", "HEAD")
    monkeypatch.chdir(repo)
    return answer


def _without_failed(answer):
    answer[1]["experiments"] = [g for g, run in _runs(answer) if not run["error"]]
    return answer


def test_the_grid_becomes_one_point_per_backbone_and_fraction(grid, tmp_path):
    points, skipped = compare.points(_without_failed(grid), CATEGORY)
    assert skipped == [] and len(points) == 12
    assert sorted({p.fraction for p in points}) == [0.1, 0.25, 0.5, 1.0]
    assert {p.backbone for p in points} == {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}
    lite0_quarter = next(p for p in points if p.backbone == "efficientnet_lite0" and p.fraction == 0.25)
    assert lite0_quarter.train_images == 38 and lite0_quarter.ci95 == (
        round(lite0_quarter.auroc - 0.01, 6),
        1.0,
    )  # from the commit, not dvc's table
    out = tmp_path / "figure.png"
    text = compare.report(_without_failed(grid), CATEGORY, out, "dvc exp show")
    assert (
        Image.open(out).size[0] > 300
        and "| 0.25 |" in text
        and "sample/hazelnut_surface (bundled" in text
        and "weights of efficientnet_lite1" in text
    )


def test_an_experiment_that_changes_more_than_the_grid_is_left_out_and_named(grid):
    answer = _without_failed(grid)
    group, run = next(_runs(answer))
    run["data"]["params"]["params.yaml"]["data"]["coreset"]["ratio"] = 0.01
    points, skipped = compare.points(answer, CATEGORY)
    assert len(points) == 9 and skipped == [f"{run['name']} (also changes coreset.ratio)"]


def test_a_failed_grid_point_is_one_line_and_nothing_is_drawn(grid, tmp_path):
    out = tmp_path / "figure.png"
    with pytest.raises(
        UsageError,
        match=r"experiment broken-point \(extract.train_fraction 0.05\) failed \(Experiment run failed\).*dvc exp remove broken-point",
    ):
        compare.report(grid, CATEGORY, out, "dvc exp show")
    assert not out.exists()


def test_a_grid_point_without_its_metrics_is_one_line(grid, tmp_path):
    answer = _without_failed(grid)
    _, run = next(_runs(answer))
    run["data"]["metrics"].pop("metrics/sample/efficientnet_lite1/hazelnut_surface.json")
    with pytest.raises(
        UsageError, match=f"experiment {run['name']} has no metrics/sample/efficientnet_lite1/hazelnut_surface.json"
    ):
        compare.report(answer, CATEGORY, tmp_path / "f.png", "dvc exp show")
    assert not (tmp_path / "f.png").exists()


def test_compare_without_experiments_exits_2_with_one_line(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True)
    result = run_cli("compare", "-c", CATEGORY, "--out", "f.png", cwd=tmp_path)
    assert_usage_error(result, "no experiments of the train-fraction grid", "dvc exp show")
    assert not (tmp_path / "f.png").exists()
