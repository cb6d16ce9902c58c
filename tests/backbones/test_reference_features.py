"""The default patch features equal PatchCore's reference formulation on real photos of the sample."""

import h5py
import pytest
import torch

from patchcore import backbones, config
from patchcore.datasets.images import image_transform, load_rgb

from helpers import REPO, edit_params, run_cli, small_copy
from reference import reference_features

PARAMS = config.load(REPO / "params.yaml")


def _images(sample_root, settings, n):
    files = sorted((sample_root / "test" / "colour").iterdir())[:n]
    transform = image_transform(settings)
    return torch.stack([transform(load_rgb(f)) for f in files])


@pytest.mark.parametrize(("name", "weights"), [("efficientnet_lite0", "pretrained"), ("wide_resnet50", "random")])
def test_patch_features_equal_the_reference(sample_root, name, weights):
    settings = PARAMS.backbone(name).model_copy(update={"weights": weights})
    assert (
        PARAMS.aggregation.border == "zeros"
        and PARAMS.aggregation.layer_weighting == "equal"
        and PARAMS.aggregation.patchsize == 3
    )
    loaded = backbones.build(settings)
    tap = backbones.LayerTap(loaded.model, settings.layers)
    features = backbones.PatchFeatures(tap, settings, PARAMS.aggregation)
    images = _images(sample_root, settings, 2)
    with torch.inference_mode():
        got = features(images)
        expected = reference_features(tap(images), settings.feature_dim, settings.target_dim)
    assert got.shape == expected.shape
    scale = expected.abs().max()
    assert torch.allclose(got, expected, atol=1e-5 * scale, rtol=1e-4), (got - expected).abs().max()


def test_the_extract_stage_writes_the_reference_features(sample_root, tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "params.yaml").write_text((REPO / "params.yaml").read_text())
    small_copy(sample_root, project / "data/sample/hazelnut_toy", train=2, good=1, defective=2)
    edit_params(project, **{"run.backbones": ["efficientnet_lite0"]})
    result = run_cli("extract", "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=project)
    assert result.returncode == 0, result.stderr
    settings = PARAMS.backbone("efficientnet_lite0")
    loaded = backbones.build(settings)
    tap = backbones.LayerTap(loaded.model, settings.layers)
    with h5py.File(project / "features/sample/hazelnut_toy/efficientnet_lite0/test.h5", "r") as f:
        paths = [p.decode() for p in f["paths"][()]]
        rows = f["patches"][()]
        h, w = f.attrs["grid"]
    transform = image_transform(settings)
    images = torch.stack([transform(load_rgb(project / "data/sample/hazelnut_toy" / p)) for p in paths])
    with torch.inference_mode():
        expected = reference_features(tap(images), settings.target_dim, settings.target_dim).reshape(
            -1, settings.target_dim
        )
    assert rows.shape == tuple(expected.shape) and h * w * len(paths) == rows.shape[0]
    assert torch.allclose(torch.from_numpy(rows), expected, atol=1e-5 * float(expected.abs().max()), rtol=1e-4)
