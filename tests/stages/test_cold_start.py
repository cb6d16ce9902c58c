"""The cold start: a model from good images alone, and the decisions a line can act on (verdicts, regions, masks)."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from helpers import assert_usage_error, edit_params, files_under, loaded_modules, run_cli, run_stages, small_copy


def folder_project(project: Path, root: Path, category: str, **changes) -> None:
    """Point the project at a folder data set holding ``category``."""
    edit_params(
        project,
        **{
            "download.mine": {"source": "folder", "path": str(root)},
            "run.dataset": "mine",
            "run.categories": [category],
        },
        **{"run.backbones": ["efficientnet_lite0"], **changes},
    )


def all_nulls_have_reasons(record: dict) -> list[str]:
    """Dotted paths of the record's nulls that null_reasons does not explain (by the path or an enclosing key)."""

    def nulls(obj, prefix=""):
        if obj is None:
            return [prefix]
        items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
        return [p for k, v in items for p in nulls(v, f"{prefix}.{k}" if prefix else str(k))]

    reasons = record["null_reasons"]
    return [p for p in nulls({k: v for k, v in record.items() if k != "null_reasons"}) if p not in reasons]


@pytest.fixture(scope="module")
def good_only(sample_root, tmp_path_factory):
    """A user's folder of good parts only (train/good + test/good), taken through download, extract, coreset,
    evaluate."""
    top = tmp_path_factory.mktemp("cold")
    root = top / "user"
    small_copy(sample_root, root / "parts", train=8, good=3, defective=0)
    shutil.rmtree(root / "parts/test/colour", ignore_errors=True)
    shutil.rmtree(root / "parts/ground_truth", ignore_errors=True)
    project = top / "project"
    project.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "params.yaml", project / "params.yaml")
    folder_project(project, root, "parts")
    download = run_cli("download", "-c", "parts", cwd=project)
    assert download.returncode == 0, download.stderr
    run_stages(project, "extract", "coreset", "evaluate", category="parts")
    return project


def test_a_good_only_folder_gives_a_model_thresholds_and_honest_metrics(good_only):
    record = json.loads((good_only / "metrics/mine/efficientnet_lite0/parts.json").read_text())
    assert record["image_auroc"] is None and record["pixel_auroc"] is None and record["aupro"] is None
    assert "no defective test images" in record["null_reasons"]["image_auroc"]
    t = record["threshold_metrics"]
    # 5-fold: every one of the 8 good training images was scored against a bank that never saw it
    assert t["method"] == "holdout_quantile" and t["scores_from"] == 8 and record["calibration"]["method"] == "5-fold"
    assert "fewer than 20" in t["warning"]
    assert t["good_test_images"] == 3 and t["false_reject_rate"] in (0.0, 1 / 3, 2 / 3, 1.0)
    lo, hi = t["false_reject_ci95"]
    assert 0.0 <= lo <= t["false_reject_rate"] <= hi <= 1.0 and hi > 0.5  # 3 images bound little
    assert t["recall"] is None and "no defective" in record["null_reasons"]["threshold_metrics.recall"]
    assert all_nulls_have_reasons(record) == []
    # where the data came from, and what was held out
    assert (
        record["data"]["source"] == "folder"
        and record["data"]["location"].endswith("user/parts")
        and len(record["data"]["tree_sha256"]) == 64
    )
    assert record["bank_images"] == 8 and record["train_images"] == 8 and record["target_dim"] == 152
    card = json.loads((good_only / "features/mine/parts/efficientnet_lite0/model.json").read_text())
    assert card["threshold"] == t["threshold"] and card["pixel_threshold"] == record["pixel_threshold"]["threshold"] > 0
    assert card["score_range"][0] <= card["threshold"] and card["connectivity"] == 8


def test_fold_banks_are_coresets_of_the_other_folds_and_the_bank_keeps_every_image(good_only):
    from patchcore.core.sampling import coreset_size, greedy_kcenter_plain, project, projection_matrix, start_index

    folder = good_only / "features/mine/parts/efficientnet_lite0"
    with h5py.File(folder / "bank.h5") as b, h5py.File(folder / "train.h5") as f:
        patches, per_image = f["patches"][()], 28 * 28
        folds, rows, starts = b["image_folds"][()], b["fold_rows"][()], b["fold_starts"][()]
        assert sorted(np.bincount(folds).tolist()) == [1, 1, 2, 2, 2]  # 8 images in 5 near-equal folds
        assert len(b["holdout_images"][()]) == 0 and b["indices"].shape[0] == coreset_size(
            8 * per_image, 0.1
        )  # all 8 images
        matrix = projection_matrix(152, 128, 0)
        for k in range(5):
            fold_rows = rows[starts[k] : starts[k + 1]]
            assert not np.isin(fold_rows // per_image, np.flatnonzero(folds == k)).any()  # never its own images
            others = (np.flatnonzero(folds != k)[:, None] * per_image + np.arange(per_image)).ravel()
            points = project([patches[others]], matrix)
            picks = greedy_kcenter_plain(
                points, coreset_size(len(others), 0.1), start_index(len(others), 0), progress=False
            )
            assert np.array_equal(fold_rows, np.sort(others[picks]))  # the textbook loop on the other folds


def test_predict_on_a_good_only_model_gives_verdicts_regions_and_masks_without_params(good_only, sample_root, tmp_path):
    model = good_only / "features/mine/parts/efficientnet_lite0"
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    shutil.copy(sample_root / "test/good/04.jpg", incoming / "good.jpg")
    shutil.copy(sample_root / "test/colour/00.jpg", incoming / "painted.jpg")
    # no params.yaml where predict runs: the model folder is enough
    result = run_cli(
        "predict", str(model), str(incoming), "--out", str(tmp_path / "out"), "--maps", "npy", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "settings: the model folder's own" in result.stderr
    lines = {Path(x["image"]).name: x for x in map(json.loads, result.stdout.splitlines())}
    card = json.loads((model / "model.json").read_text())
    for x in lines.values():
        assert x["verdict"] == ("anomalous" if x["score"] >= card["threshold"] else "good")
        assert 0.0 <= x["normalised_score"] <= 1.0 and (x["normalised_score"] >= 0.5) == (
            x["score"] >= card["threshold"]
        )
        assert x["size"] == [512, 512]
        mask = np.asarray(Image.open(x["mask"]))
        amap = np.load(x["map"])
        assert mask.shape == amap.shape == (512, 512)
        assert ((mask > 0) == (amap >= card["pixel_threshold"])).all()
        assert (len(x["regions"]) > 0) == bool(mask.any())
    painted = lines["painted.jpg"]
    assert (
        painted["verdict"] == "anomalous"
        and painted["regions"]
        and painted["regions"][0]["max_score"] >= card["pixel_threshold"]
    )


def test_predict_uses_the_model_settings_when_params_yaml_differs(good_only, sample_root, tmp_path):
    model = good_only / "features/mine/parts/efficientnet_lite0"
    image = sample_root / "test/good/04.jpg"
    shutil.copy(good_only / "params.yaml", tmp_path / "params.yaml")
    edit_params(
        tmp_path,
        **{
            "backbones.efficientnet_lite0.crop": 200,
            "backbones.efficientnet_lite0.resize": 200,
            "aggregation.border": "valid",
        },
    )
    other = run_cli("predict", str(model), str(image), "--out", str(tmp_path / "a"), cwd=tmp_path)
    same = run_cli("predict", str(model), str(image), "--out", str(tmp_path / "b"), cwd=good_only)
    assert other.returncode == 0 and same.returncode == 0, other.stderr
    assert (
        "params.yaml differs" in other.stderr
        and "crop 200" in other.stderr
        and "'valid'" in other.stderr
        and "not used" in other.stderr
    )
    assert json.loads(other.stdout)["score"] == json.loads(same.stdout)["score"]


def test_a_category_without_test_images_and_one_with_only_defects(sample_root, project, tmp_path):
    root = tmp_path / "user"
    small_copy(sample_root, root / "trainonly", train=6, good=0, defective=0)
    shutil.rmtree(root / "trainonly/test", ignore_errors=True)
    shutil.rmtree(root / "trainonly/ground_truth", ignore_errors=True)
    small_copy(sample_root, root / "defects", train=6, good=0, defective=3)
    for category in ("trainonly", "defects"):
        folder_project(project, root, category)
        assert run_cli("download", "-c", category, cwd=project).returncode == 0
        run_stages(project, "extract", "coreset", "evaluate", category=category)
        record = json.loads((project / f"metrics/mine/efficientnet_lite0/{category}.json").read_text())
        assert record["image_auroc"] is None and all_nulls_have_reasons(record) == []
        t = record["threshold_metrics"]
        assert (
            t["false_reject_rate"] is None
            and "no good test images" in record["null_reasons"]["threshold_metrics.false_reject_rate"]
        )
    assert (
        record["test_images"] == 3 and record["threshold_metrics"]["recall"] is not None
    )  # defects only: recall still means something
    assert "no good test images" in record["null_reasons"]["image_auroc"]
    with h5py.File(project / "features/mine/trainonly/efficientnet_lite0/test.h5") as f:
        assert f["patches"].shape[0] == 0 and f["labels"].shape == (0,)


def test_f1_max_on_a_good_only_category_is_refused_and_writes_nothing(good_only, tmp_path):
    project = tmp_path / "p"
    shutil.copytree(good_only, project, ignore=shutil.ignore_patterns("metrics", "plots", "model.json"))
    edit_params(project, **{"evaluate.threshold": {"method": "f1_max"}})
    result = run_cli("evaluate", "-c", "parts", "-b", "efficientnet_lite0", cwd=project)
    assert_usage_error(result, "evaluate.threshold.method", "f1_max", "holdout_quantile")
    assert files_under(project / "metrics") == [] and files_under(project / "plots") == []
    assert not (project / "features/mine/parts/efficientnet_lite0/model.json").exists()


def test_no_training_images_is_one_line(sample_root, project, tmp_path):
    root = tmp_path / "user"
    small_copy(sample_root, root / "empty", train=0, good=2, defective=2)
    folder_project(project, root, "empty")
    assert_usage_error(run_cli("download", "-c", "empty", cwd=project), "train/good", "no training images")
    assert files_under(project / "data/mine") == []


def _texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    noise = np.stack([gaussian_filter(rng.standard_normal(shape), 2.0) for _ in range(3)], axis=-1)
    return np.clip(128 + 60 * noise / noise.std(), 0, 255).astype(np.uint8)


def test_region_boxes_find_a_planted_defect_in_the_original_pixels(project, tmp_path):
    """A 36 x 28 px magenta patch planted at a known place in a 240 x 320 (h x w) image, not the network's 224 px
    input: the highest region's box, in the original pixels, must hold it and be of its size."""
    rng = np.random.default_rng(0)
    root = tmp_path / "user" / "tiles"
    (root / "train/good").mkdir(parents=True)
    (root / "test/good").mkdir(parents=True)
    for i in range(8):
        Image.fromarray(_texture(rng, (240, 320))).save(root / f"train/good/{i}.png")
    Image.fromarray(_texture(rng, (240, 320))).save(root / "test/good/0.png")
    folder_project(project, tmp_path / "user", "tiles", **{"coreset.ratio": 0.5})
    assert run_cli("download", "-c", "tiles", cwd=project).returncode == 0
    run_stages(project, "extract", "coreset", "evaluate", category="tiles")
    x, y, w, h = 170, 90, 36, 28
    planted = _texture(rng, (240, 320))
    planted[y : y + h, x : x + w] = (230, 30, 200)
    Image.fromarray(planted).save(tmp_path / "planted.png")
    model = project / "features/mine/tiles/efficientnet_lite0"
    result = run_cli("predict", str(model), str(tmp_path / "planted.png"), "--out", str(tmp_path / "out"), cwd=project)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["verdict"] == "anomalous" and record["size"] == [320, 240]
    top = record["regions"][0]
    cx, cy = x + w / 2, y + h / 2
    assert top["x"] <= cx <= top["x"] + top["width"] and top["y"] <= cy <= top["y"] + top["height"]
    # the map is blurred (sigma 4 px) at patch resolution (8 px): edges within 20 original pixels of the patch's
    for found, true in (
        (top["x"], x),
        (top["y"], y),
        (top["x"] + top["width"], x + w),
        (top["y"] + top["height"], y + h),
    ):
        assert abs(found - true) <= 20, (top, (x, y, w, h))
    assert Image.open(record["mask"]).size == (320, 240)


def test_a_coreset_of_every_patch_projects_and_selects_nothing(good_only, tmp_path, monkeypatch):
    from patchcore import config
    from patchcore.pipeline import memory_bank

    def refused(*args, **kwargs):
        raise AssertionError("ratio 1.0 keeps every patch: nothing to project or select")

    monkeypatch.setattr(memory_bank, "_projected", refused)
    monkeypatch.setattr(memory_bank, "greedy_kcenter", refused)
    settings = config.load(good_only / "params.yaml").coreset.model_copy(update={"ratio": 1.0})
    folder = good_only / "features/mine/parts/efficientnet_lite0"
    done = memory_bank.run(folder / "train.h5", tmp_path / "bank.h5", settings)
    per_image = 28 * 28
    assert done["bank_size"] == 8 * per_image
    with h5py.File(tmp_path / "bank.h5") as b, h5py.File(folder / "train.h5") as f:
        assert np.array_equal(b["indices"][()], np.arange(8 * per_image))
        assert np.array_equal(b["bank"][()], f["patches"][()])
        folds, rows, starts = b["image_folds"][()], b["fold_rows"][()], b["fold_starts"][()]
        for k in range(5):
            others = (np.flatnonzero(folds != k)[:, None] * per_image + np.arange(per_image)).ravel()
            assert np.array_equal(rows[starts[k] : starts[k + 1]], others)  # every patch of the other folds


def test_selections_side_by_side_write_the_banks_of_one_after_another(good_only, tmp_path, monkeypatch):
    """The deployed bank and the five fold banks select in threads, one per core: the same bytes as in turn."""
    from concurrent.futures import ThreadPoolExecutor

    from patchcore import config
    from patchcore.pipeline import memory_bank

    pools = []

    class Counted(ThreadPoolExecutor):
        def __init__(self, workers):
            pools.append(workers)
            super().__init__(workers)

    monkeypatch.setattr(memory_bank, "ThreadPoolExecutor", Counted)
    settings = config.load(good_only / "params.yaml").coreset
    folder = good_only / "features/mine/parts/efficientnet_lite0"
    written = {}
    for cores in (1, 3):
        monkeypatch.setattr(memory_bank.os, "sched_getaffinity", lambda _, n=cores: set(range(n)), raising=False)
        memory_bank.run(folder / "train.h5", tmp_path / f"{cores}.h5", settings)
        with h5py.File(tmp_path / f"{cores}.h5") as b:
            written[cores] = {name: b[name][()] for name in b}
    assert pools == [3]  # one core: in turn, no pool; three: three selections at once
    assert written[1].keys() == written[3].keys() and len(written[1]["fold_starts"]) == 6
    for name, values in written[1].items():
        assert np.array_equal(values, written[3][name]), name


def test_a_selection_that_cannot_fit_in_memory_is_refused_before_any_work(good_only, tmp_path, monkeypatch):
    from patchcore import config
    from patchcore.errors import UsageError
    from patchcore.pipeline import memory_bank

    def refused(*args, **kwargs):
        raise AssertionError("nothing is projected once the memory is known not to be enough")

    monkeypatch.setattr(memory_bank, "_projected", refused)
    monkeypatch.setattr(memory_bank, "available_bytes", lambda: 2**20)  # a machine with 1 MiB to spare
    settings = config.load(good_only / "params.yaml").coreset
    folder = good_only / "features/mine/parts/efficientnet_lite0"
    with pytest.raises(UsageError) as refusal:
        memory_bank.run(folder / "train.h5", tmp_path / "bank.h5", settings)
    message = str(refusal.value)
    assert "6,272 training patches" in message and "geometry.scale" in message and "\n" not in message
    assert "GiB are available" in message
    assert files_under(tmp_path) == []  # nothing written


def test_predict_loads_no_statistics_or_plotting_library(good_only, sample_root, tmp_path):
    model = good_only / "features/mine/parts/efficientnet_lite0"
    result, modules = loaded_modules(
        tmp_path,
        "predict",
        str(model),
        str(sample_root / "test/good/04.jpg"),
        "--out",
        str(tmp_path / "out"),
        cwd=good_only,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["verdict"] in ("good", "defective")
    assert {"torch", "timm", "faiss"} <= modules  # what predict needs does load
    for library in ("scipy.stats", "sklearn", "matplotlib.pyplot", "ray"):
        assert library not in modules, library
