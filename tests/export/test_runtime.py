"""The copyable runtime: its imports, its image preparation, and its decision geometry (which the pipeline imports)
against references stated independently (tests/reference_geometry.py)."""

import ast
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from patchcore.config import BackboneSettings
from patchcore.datasets.images import image_transform, network_view
from patchcore.runtime import patchcore_onnx as runtime

from helpers import REPO
from reference_geometry import map_back, scipy_regions, torchvision_crop_box

RUNTIME = REPO / "patchcore/runtime/patchcore_onnx.py"


def test_runtime_imports_only_numpy_pillow_onnxruntime_and_the_standard_library():
    tree = ast.parse(RUNTIME.read_text())
    tops = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import ties the file to this package"
            tops.add(node.module.split(".")[0])
    assert tops - set(sys.stdlib_module_names) == {"numpy", "PIL", "onnxruntime"}


def test_a_copy_of_the_runtime_runs_without_torch_or_this_package(tmp_path):
    (tmp_path / "patchcore_onnx.py").write_text(RUNTIME.read_text())
    probe = "import sys, patchcore_onnx; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'patchcore', 'stages', 'scipy', 'torchvision')))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _settings(resize: int, crop: int, interpolation: str) -> BackboneSettings:
    return BackboneSettings(
        name="b",
        arch="timm/tf_efficientnet_lite0",
        weights="random",
        layers=("blocks.2",),
        resize=resize,
        crop=crop,
        interpolation=interpolation,
        target_dim=8,
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
    )


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(24, 300),
    height=st.integers(24, 300),
    resize=st.integers(32, 96),
    shrink=st.integers(0, 12),
    interpolation=st.sampled_from(["bilinear", "bicubic"]),
    mode=st.sampled_from(["RGB", "L", "RGBA", "P", "I;16"]),
    seed=st.integers(0, 2**16),
)
def test_prepare_gives_the_pixels_extract_sees(width, height, resize, shrink, interpolation, mode, seed):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    elif mode != "RGB":
        image = image.convert(mode)
    crop = max(32, resize - shrink)
    s = _settings(resize, crop, interpolation)
    from patchcore.datasets.images import to_rgb

    expected = np.asarray(network_view(s)(to_rgb(image)))
    got = runtime.prepare(image, resize, crop, interpolation)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
    # the normalised tensor extract feeds the network is these very pixels
    tensor = image_transform(s)(to_rgb(image))
    assert np.allclose(tensor.permute(1, 2, 0).numpy() * np.array(s.std) + np.array(s.mean), got / 255.0, atol=1e-6)
    assert runtime.crop_box(width, height, resize, crop) == torchvision_crop_box(
        resize, crop, interpolation, (height, width)
    )


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), density=st.floats(0.05, 0.7), seed=st.integers(0, 2**16))
def test_regions_are_scipys_8_connected_labels(h, w, density, seed):
    omap = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    threshold = float(1.0 - density)
    mask_a, found_a = scipy_regions(omap, threshold)
    mask_b, found_b = runtime.find_regions(omap, threshold)
    assert np.array_equal(mask_a, mask_b) and found_a == found_b


def test_labels_join_diagonal_neighbours_only():
    mask = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=bool)
    labels, n = runtime.label_regions(mask)
    assert n == 3 and labels[0, 0] == labels[1, 1] and labels[0, 3] != labels[2, 3]


@pytest.mark.parametrize(
    "meta, key",
    [
        ({"format_version": 2}, "format_version"),
        ({"input_size": 0}, "input_size"),
        ({"interpolation": "nearest"}, "interpolation"),
        ({"threshold": float("nan")}, "threshold"),
        ({"score_range": [3.0, 1.0]}, "score_range"),
        ({"heat_scale": -1}, "heat_scale"),
        ({"weights": None}, "weights"),
    ],
)
def test_metadata_a_runtime_cannot_act_on_is_refused(meta, key):
    good = {
        "format_version": 1,
        "input_size": 224,
        "resize": 256,
        "interpolation": "bilinear",
        "threshold": 2.0,
        "pixel_threshold": 1.0,
        "score_range": [1.0, 3.0],
        "heat_scale": 4.0,
        **dict.fromkeys(("dataset", "category", "backbone", "weights"), "x"),
    }
    assert runtime.checked_metadata(dict(good)) == good
    with pytest.raises(ValueError, match=key):
        runtime.checked_metadata({**good, **meta})


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(20, 200),
    height=st.integers(20, 200),
    resize=st.integers(32, 64),
    shrink=st.integers(0, 10),
    seed=st.integers(0, 2**16),
)
def test_maps_go_back_to_the_original_bilinearly_at_pixel_centres(width, height, resize, shrink, seed):
    crop = max(32, resize - shrink)
    amap = np.random.default_rng(seed).random((crop, crop)).astype(np.float32)
    box = torchvision_crop_box(resize, crop, "bilinear", (height, width))
    got = runtime.to_original(amap, box, (height, width))
    assert got.dtype == np.float32 and np.allclose(got, map_back(amap, box, (height, width)), atol=1e-6)


@pytest.mark.parametrize("key", ["threshold", "pixel_threshold", "score_range", "heat_scale"])
def test_metadata_without_a_key_the_runtime_reads_is_refused(key):
    """A missing threshold was a KeyError at the first image; null is how the file says 'none'."""
    good = {
        "format_version": 1,
        "input_size": 224,
        "resize": 256,
        "interpolation": "bilinear",
        "threshold": None,
        "pixel_threshold": None,
        "score_range": None,
        "heat_scale": 4.0,
        **dict.fromkeys(("dataset", "category", "backbone", "weights"), "x"),
    }
    assert runtime.checked_metadata(dict(good)) == good
    with pytest.raises(ValueError, match=f"metadata '{key}' is missing"):
        runtime.checked_metadata({k: v for k, v in good.items() if k != key})


def _bare_inspector(
    resize: int, crop: int, threshold: float, pixel: float, low: float, high: float
) -> runtime.Inspector:
    """decide() without a session: what it makes of a map depends on the metadata alone."""
    inspector = object.__new__(runtime.Inspector)
    inspector.meta = {"threshold": threshold, "pixel_threshold": pixel, "score_range": [low, high]}
    inspector.size, inspector.resize, inspector.interpolation = crop, resize, "bilinear"
    return inspector


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(20, 240),
    height=st.integers(20, 240),
    resize=st.integers(32, 64),
    shrink=st.integers(0, 10),
    score=st.floats(0.0, 5.0),
    seed=st.integers(0, 2**16),
)
def test_the_decision_on_non_square_images(width, height, resize, shrink, score, seed):
    """Map-back, mask, regions and verdict of Inspector.decide (the pipeline's decision too) against the references,
    on images that are not square (a width/height swap goes unseen on square ones); the normalised score by its
    definition."""
    from hypothesis import assume

    assume(width != height)
    crop = max(32, resize - shrink)
    amap = np.random.default_rng(seed).random((crop, crop)).astype(np.float32) * 2.0
    threshold, pixel, low, high = 2.0, 1.6, 1.0, 3.0
    inspector = _bare_inspector(resize, crop, threshold, pixel, low, high)
    _, boxes = inspector.inputs(Image.new("RGB", (width, height)))  # the boxes the runtime's own geometry gives
    record, omap, mask = inspector.decide(score, amap[None], boxes, (width, height))
    box = torchvision_crop_box(resize, crop, "bilinear", (height, width))
    assert omap.shape == (height, width) and np.allclose(omap, map_back(amap, box, (height, width)), atol=1e-6)
    expected_mask, expected_regions = scipy_regions(omap, pixel)
    assert np.array_equal(mask, expected_mask) and record["regions"] == expected_regions
    assert record["verdict"] == ("anomalous" if score >= threshold else "good") and record["size"] == [width, height]
    # 0.5 at the threshold, scaled by the held-out score range (high - low), clamped to [0, 1]
    assert record["normalised_score"] == round(min(1.0, max(0.0, (score - threshold) / (high - low) + 0.5)), 6)
