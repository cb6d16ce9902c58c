"""Each input geometry through every path: extract, coreset, evaluate, predict (torch and the exported file), export's
parity check; and a defect that lies only where the centre crop does not look.

The category: pictures of three nuts side by side (1536 x 512 px, 3:1), built from the bundled photos. A defective
picture is a good one whose right nut is replaced by a painted nut, so the centre crop (the middle third) of a
defective picture is that of a good one, and only whole and tiles can see the paint.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from patchcore.core.metrics import image_auroc

from helpers import edit_params, run_cli, run_stages

GEOMETRIES = {
    "efficientnet_lite0": None,  # resize_crop, the default
    "lite0_whole": {"name": "whole"},
    "lite0_tiles": {"name": "tiles", "scale": 0.5, "overlap": 32},
}
GOOD = 3
DEFECTS = 4


def _row(photos: list[Image.Image]) -> Image.Image:
    row = Image.new("RGB", (512 * len(photos), 512))
    for i, photo in enumerate(photos):
        row.paste(photo.convert("RGB").resize((512, 512)), (512 * i, 0))
    return row


def _build(sample_root, root) -> None:
    """train: 8 rows of training nuts; test/good: 3 rows of good test nuts; test/colour: those rows again, each with
    a painted nut on the right, and its mask there."""
    train = sorted((sample_root / "train/good").iterdir())
    good = sorted((sample_root / "test/good").iterdir())
    painted = sorted((sample_root / "test/colour").iterdir())
    for sub in ("train/good", "test/good", "test/colour", "ground_truth/colour"):
        (root / sub).mkdir(parents=True)
    for i in range(8):
        _row([Image.open(train[(3 * i + k) % len(train)]) for k in range(3)]).save(root / f"train/good/{i:02d}.png")
    rows = [[Image.open(good[(i + k) % len(good)]) for k in range(3)] for i in range(GOOD)]
    for i, photos in enumerate(rows):
        _row(photos).save(root / f"test/good/{i:02d}.png")
    for i in range(DEFECTS):
        photos = rows[i % GOOD][:2] + [Image.open(painted[i])]
        _row(photos).save(root / f"test/colour/{i:02d}.png")
        mask = (
            Image.open(sample_root / "ground_truth/colour" / f"{painted[i].stem}.png").convert("L").resize((512, 512))
        )
        full = Image.new("L", (1536, 512))
        full.paste(mask.point(lambda v: 255 if v else 0), (1024, 0))
        full.save(root / f"ground_truth/colour/{i:02d}.png")


@pytest.fixture(scope="module")
def wide(sample_root, tmp_path_factory):
    """A project whose three backbones (crop, whole, tiles) each went through extract, coreset, evaluate and export."""
    from helpers import REPO

    project = tmp_path_factory.mktemp("wide")
    (project / "params.yaml").write_text((REPO / "params.yaml").read_text())
    _build(sample_root, project / "data/sample/hazelnut_toy")
    edit_params(project, **{"run.backbones": list(GEOMETRIES), "coreset.ratio": 0.25})
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text())
    for name, geometry in GEOMETRIES.items():
        entry = dict(params["backbones"]["efficientnet_lite0"])
        if geometry:
            entry["geometry"] = geometry
        params["backbones"][name] = entry
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for name in GEOMETRIES:
        run_stages(project, "extract", "coreset", "evaluate", backbone=name)
    return project


def _record(project, backbone: str) -> dict:
    return json.loads((project / f"metrics/sample/{backbone}/hazelnut_toy.json").read_text())


def _scores(project, backbone: str) -> dict[str, float]:
    lines = (project / f"plots/sample/{backbone}/hazelnut_toy/scores.csv").read_text().splitlines()[1:]
    return {line.split(",")[0]: float(line.split(",")[2]) for line in lines}  # image,label,score,...


def test_a_defect_the_centre_crop_drops_is_missed_by_it_and_found_by_whole_and_tiles(wide):
    crop = _scores(wide, "efficientnet_lite0")
    # the crop of a defective picture is its good twin's (the paint lies in the dropped third): the same score,
    # up to the resize filter's few pixels across the crop's edge
    for i in range(DEFECTS):
        twin = crop[f"test/good/{i % GOOD:02d}.png"]
        assert abs(crop[f"test/colour/{i:02d}.png"] - twin) <= 0.02 * twin, (i, crop)
    for backbone in ("lite0_whole", "lite0_tiles"):
        record = _record(wide, backbone)
        assert record["image_auroc"] == 1.0, (backbone, _scores(wide, backbone))
        assert record["full_size"]["pixel_auroc"] > 0.9, (backbone, record["full_size"])
    assert (
        _record(wide, "lite0_tiles")["full_size"]["aupro"] > _record(wide, "efficientnet_lite0")["full_size"]["aupro"]
    )


def test_every_record_states_its_geometry_and_where_pixel_metrics_live(wide):
    crop, tiles = _record(wide, "efficientnet_lite0"), _record(wide, "lite0_tiles")
    assert crop["geometry"] == {"name": "resize_crop", "resize": 224, "crop": 224}
    assert tiles["geometry"] == {"name": "tiles", "scale": 0.5, "overlap": 32, "crop": 224}
    assert tiles["image_size"] == {"width": [1536, 1536], "height": [512, 512]}
    # the crop's view holds no defect pixel (the paint lies in the dropped third), tiles have no one view: both say
    # so, and both measure at full size
    for record in (crop, tiles):
        assert record["pixel_auroc"] is None and "see full_size" in record["null_reasons"]["pixel_auroc"]
        assert record["full_size"]["pixel_auroc"] is not None
    # 8 training pictures of 4 x 2 tiles (768 x 256 at scale 0.5, 224 px tiles sharing 32 px or more), 28 x 28
    # patches each
    assert tiles["train_patches"] == 8 * 8 * 28 * 28


def test_predict_and_the_exported_file_decide_a_tiled_picture_as_evaluate_did(wide, tmp_path):
    folder = wide / "features/sample/hazelnut_toy/lite0_tiles"
    scores_csv = wide / "plots/sample/lite0_tiles/hazelnut_toy/scores.csv"
    result = run_cli("export", str(folder), "--out", str(tmp_path / "onnx"), "--check", str(scores_csv), cwd=wide)
    assert result.returncode == 0, result.stderr
    images = wide / "data/sample/hazelnut_toy/test/colour"
    for args in ((str(folder),), (str(tmp_path / "onnx/model.onnx"), "--runtime", "onnx")):
        out = tmp_path / f"predict_{len(args)}"
        result = run_cli("predict", *args, str(images), "--out", str(out), cwd=wide)
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        expected = _scores(wide, "lite0_tiles")
        for r in records:
            name = "test/colour/" + r["image"].rsplit("/", 1)[1]
            assert r["score"] == pytest.approx(expected[name], rel=1e-4)
            assert r["size"] == [1536, 512] and r["verdict"] == "anomalous"
            top = r["regions"][0]  # the highest region lies on the painted nut, in the picture's own pixels
            assert top["x"] >= 1024 - 32 and top["x"] + top["width"] <= 1536
            mask = np.asarray(Image.open(r["mask"]))
            assert mask.shape == (512, 1536)
        heat = Image.open(records[0]["heatmap"])
        assert heat.size == (1536, 512)  # drawn over the whole picture, not a crop


def test_the_crop_images_auroc_is_chance_on_this_category(wide):
    """The other side of the first test: the crop cannot rank what it does not see."""
    record = _record(wide, "efficientnet_lite0")
    scores = _scores(wide, "efficientnet_lite0")
    labels = np.array([1 if k.startswith("test/colour") else 0 for k in scores])
    assert record["image_auroc"] == pytest.approx(image_auroc(labels, np.array(list(scores.values()))), abs=1e-6)
    assert record["image_auroc"] < 0.9


def test_the_service_models_score_a_tiled_picture_as_evaluate_did(wide, tmp_path):
    """What patchcore serve holds (model.loaded): the torch folder and the exported file, one picture each."""
    from patchcore.datasets.images import load_rgb
    from patchcore.model.loaded import OnnxModel, TorchModel

    folder = wide / "features/sample/hazelnut_toy/lite0_tiles"
    result = run_cli("export", str(folder), "--out", str(tmp_path / "onnx"), cwd=wide)
    assert result.returncode == 0, result.stderr
    image = load_rgb(wide / "data/sample/hazelnut_toy/test/colour/02.png")
    expected = _scores(wide, "lite0_tiles")["test/colour/02.png"]
    for model in (TorchModel(folder, "cpu"), OnnxModel(tmp_path / "onnx/model.onnx")):
        (scored,) = model.score([image])
        assert scored.entry["score"] == pytest.approx(expected, rel=1e-4), model.runtime
        assert scored.picture.size == (1536, 512) and scored.amap.shape == (512, 1536)
        assert scored.window == (0.0, 0.0, 1536.0, 512.0)  # the heatmap covers the whole picture
        assert scored.entry["regions"][0]["x"] >= 1024 - 32
