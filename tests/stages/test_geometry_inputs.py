"""Bad geometries and pictures too large for one: one line naming the key or the file and the fix, exit 2, nothing
written; a picture smaller than one tile is enlarged, not refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from patchcore.runtime import patchcore_onnx as runtime

from helpers import assert_usage_error, edit_params, files_under, run_cli, run_stages, small_copy

KEY = "backbones.efficientnet_lite0"


@pytest.mark.parametrize(
    ("geometry", "needles"),
    [
        ({"name": "tiles", "overlap": -8}, ["geometry.overlap", "leaves pixels between tiles"]),
        ({"name": "tiles", "overlap": 200}, ["geometry.overlap", "more than half the 224 px tile", "crop / 2"]),
        ({"name": "tiles", "scale": 0}, ["geometry.scale", "(0, 4]"]),
        ({"name": "tiles", "scale": 9.5}, ["geometry.scale", "(0, 4]"]),
        ({"name": "resize_crop", "scale": 0.5}, ["geometry", "'scale' applies to tiles only"]),
        ({"name": "mosaic"}, ["geometry.name", "resize_crop", "tiles"]),
    ],
)
def test_a_geometry_that_cannot_cover_the_picture_is_refused_in_one_line(project, sample_root, geometry, needles):
    small_copy(sample_root, project / "data/sample/hazelnut_toy", train=2, good=1, defective=1)
    edit_params(project, **{"backbones.efficientnet_lite0.geometry": geometry})
    result = run_cli("extract", "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=project)
    assert_usage_error(result, KEY, *needles)
    assert files_under(project / "features") == []


def test_a_picture_that_would_need_too_many_tiles_is_refused_before_any_work(project, sample_root):
    root = small_copy(sample_root, project / "data/sample/hazelnut_toy", train=2, good=1, defective=1)
    Image.new("RGB", (2000, 2000), (200, 180, 40)).save(root / "test/good/huge.png")
    edit_params(project, **{"backbones.efficientnet_lite0.geometry": {"name": "tiles", "scale": 4, "overlap": 112}})
    result = run_cli("extract", "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=project)
    # 8000 px a side at scale 4, a tile every 112 px: 71 x 71 tiles
    assert_usage_error(result, "huge.png", "5041 tiles", "more than 4096", "lower the scale")
    assert "extract train" not in result.stderr  # refused while listing, before the first forward pass
    assert files_under(project / "features") == []


def test_a_picture_smaller_than_a_tile_is_enlarged_to_fill_one(project, sample_root):
    """96 x 64 pictures with 224 px tiles at scale 1: one tile each, the picture enlarged until its shorter side is
    224 (so 336 x 224: two tiles across), and the maps come back at 96 x 64."""
    root = small_copy(sample_root, project / "data/sample/hazelnut_toy", train=3, good=1, defective=2)
    for path in root.rglob("*.*"):
        if path.suffix in (".jpg", ".png"):
            with Image.open(path) as image:
                image.resize((96, 64), Image.Resampling.NEAREST).save(path)
    edit_params(
        project,
        **{
            "run.backbones": ["efficientnet_lite0"],
            "backbones.efficientnet_lite0.geometry": {"name": "tiles", "scale": 1, "overlap": 64},
        },
    )
    run_stages(project, "extract", "coreset", "evaluate")
    record = json.loads((project / "metrics/sample/efficientnet_lite0/hazelnut_toy.json").read_text())
    assert record["image_size"] == {"width": [96, 96], "height": [64, 64]}
    assert record["train_patches"] == 3 * 2 * 28 * 28  # two tiles of the enlarged 336 x 224 picture each
    mask = np.asarray(Image.open(next((project / "pictures").rglob("masks/**/*.png"))))
    assert mask.shape == (64, 96)
    assert runtime.views(96, 64, {"name": "tiles", "scale": 1.0, "overlap": 64}, 224, 224) == [
        runtime.View(336, 224, 0, 0),
        runtime.View(336, 224, 112, 0),
    ]


@pytest.mark.parametrize(
    "geometry",
    [{"name": "spiral"}, {"name": "tiles", "scale": 0, "overlap": 8}, {"name": "tiles", "scale": 1, "overlap": True}],
)
def test_an_exported_file_with_a_geometry_the_runtime_cannot_act_on_is_refused(geometry):
    meta = {
        "format_version": runtime.FORMAT_VERSION,
        "input_size": 224,
        "resize": 224,
        "dataset": "sample",
        "category": "toy",
        "backbone": "lite0",
        "weights": "w",
        "interpolation": "bilinear",
        "threshold": None,
        "pixel_threshold": None,
        "score_range": None,
        "heat_scale": 1.0,
        "geometry": geometry,
    }
    with pytest.raises(ValueError, match="metadata 'geometry'"):
        runtime.checked_metadata(meta)
