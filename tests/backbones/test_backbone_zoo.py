"""Every backbone of the seed: geometry, faithful layer taps, weight resolution, whole pipeline."""

import json
import os
import shutil

import h5py
import numpy as np
import pytest
import torch
import yaml

from patchcore import backbones, config
from patchcore.core.features import aggregate
from patchcore.errors import UsageError

from helpers import (
    REPO,
    assert_usage_error,
    edit_params,
    files_under,
    run_cli,
    run_stages,
    small_copy,
)

PARAMS = config.load(REPO / "params.yaml")

# name -> (channels of the two layers, input size, patch grid)
EXPECTED = {
    "efficientnet_lite0": ((40, 112), 224, 28),
    "efficientnet_lite1": ((40, 112), 240, 30),
    "efficientnet_lite2": ((48, 120), 260, 33),
    "wide_resnet50": ((512, 1024), 224, 28),
    "clip_rn50": ((512, 1024), 224, 28),
    "clip_rn50x4": ((640, 1280), 288, 36),
    "clip_rn50x16": ((768, 1536), 384, 48),
    "clip_rn101": ((512, 1024), 224, 28),
}
SEED_BACKBONES = ["wide_resnet50", "clip_rn50", "clip_rn50x4", "clip_rn50x16", "clip_rn101"]


def settings(name, **changes):
    return PARAMS.backbone(name).model_copy(update=changes)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_geometry(name):
    channels, size, grid = EXPECTED[name]
    geo = backbones.geometry(settings(name))
    assert geo.channels == channels and geo.strides == (8, 16) and geo.grid == (grid, grid)
    assert settings(name).crop == size


def direct_forward(name: str, model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The same layers computed by calling the library's modules by hand, no hooks."""
    if name == "wide_resnet50":
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    else:  # open_clip ModifiedResNet
        x = model.stem(x)
    x = model.layer1(x)
    l2 = model.layer2(x)
    return [l2, model.layer3(l2)]


@pytest.mark.parametrize("name", SEED_BACKBONES)
def test_tap_equals_direct_forward(name):
    s = settings(name, weights="random")
    loaded = backbones.build(s)
    assert "RANDOM" in loaded.weights
    x = torch.randn(1, 3, s.crop, s.crop)
    with torch.inference_mode():
        tapped = backbones.LayerTap(loaded.model, s.layers)(x)
        direct = direct_forward(name, loaded.model, x)
    for t, d in zip(tapped, direct):
        assert torch.equal(t, d)


def test_random_weights_are_the_same_every_time():
    a = backbones.build(settings("clip_rn50", weights="random")).model
    b = backbones.build(settings("clip_rn50", weights="random")).model
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("name", ["wide_resnet50", "clip_rn50", "efficientnet_lite0"])
def test_explicit_weights_file_is_loaded(name, tmp_path):
    source = backbones.build(settings(name, weights="random")).model
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01)  # differ from the seeded random init, so a silent fallback would show
    path = tmp_path / "weights.pth"
    if name.startswith("clip"):
        import open_clip

        clip = open_clip.create_model("RN50", pretrained=None, force_quick_gelu=True)
        clip.visual.load_state_dict(source.state_dict())
        torch.save(clip.state_dict(), path)
    else:
        torch.save(source.state_dict(), path)
    loaded = backbones.build(settings(name, weights=str(path)))
    assert loaded.weights == f"file {path}"
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def offline_env(tmp_path):
    env = dict(
        os.environ,
        TORCH_HOME=str(tmp_path / "torch"),
        HF_HOME=str(tmp_path / "hf"),
        HOME=str(tmp_path / "home"),
        PATCHCORE_OFFLINE="1",
    )
    env.pop("HF_HUB_CACHE", None)
    return env


@pytest.mark.parametrize("name", ["wide_resnet50", "clip_rn50x16"])
def test_missing_published_weights_fail_clearly_before_any_work(project, sample_root, tmp_path, name):
    small_copy(sample_root, project / "data/sample/hazelnut_toy", train=2, good=1, defective=1)
    edit_params(project, **{"run.backbones": [name]})
    result = run_cli("extract", "-c", "hazelnut_toy", "-b", name, cwd=project, env=offline_env(tmp_path))
    # the whole of stderr is the one line: it names the cache file it looked for
    assert result.stderr.strip().count("\n") == 0
    assert_usage_error(result, f"error: backbone {name}:", f"backbones.{name}.weights", str(tmp_path))
    assert files_under(project / "features") == []


def test_bad_layer_and_input_size_are_usage_errors():
    with pytest.raises(UsageError, match="unknown layer 'layer9'"):
        backbones.geometry(settings("wide_resnet50", layers=("layer2", "layer9")))
    with pytest.raises(UsageError, match="cannot take 8 px"):
        backbones.geometry(settings("clip_rn50", resize=8, crop=8))
    bad = yaml.safe_load((REPO / "params.yaml").read_text())
    bad["backbones"]["clip_rn50"]["crop"] = 16
    with pytest.raises(UsageError, match="32 <= crop"):
        config.validate(config.Params, bad, "params.yaml")


@pytest.mark.parametrize("name", SEED_BACKBONES)
def test_whole_pipeline_runs_with_random_weights(name, sample_root, tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    small_copy(sample_root, project / "data/sample/hazelnut_toy", train=2, good=1, defective=1)
    edit_params(project, **{"run.backbones": [name], f"backbones.{name}.weights": "random", "coreset.ratio": 0.05})
    run_stages(project, "extract", "coreset", "evaluate", backbone=name)
    channels, size, grid = EXPECTED[name]
    record = json.loads((project / f"metrics/sample/{name}/hazelnut_toy.json").read_text())
    assert record["weights"].startswith("RANDOM") and record["test_images"] == 2
    s = settings(name, weights="random")
    with h5py.File(project / f"features/sample/hazelnut_toy/{name}/test.h5", "r") as f:
        assert f["patches"].shape == (2 * grid * grid, s.target_dim)
        stored = f["patches"][: grid * grid]
        first = f["paths"][0].decode()
    # the stored features are exactly the library module's layers, aggregated
    from patchcore.datasets.images import image_transform, load_rgb

    loaded = backbones.build(s)
    x = image_transform(s)(load_rgb(project / "data/sample/hazelnut_toy" / first))[None]
    with torch.inference_mode():
        expected = aggregate(direct_forward(name, loaded.model, x), s.target_dim).reshape(-1, s.target_dim).numpy()
    np.testing.assert_allclose(stored, expected, rtol=1e-4, atol=1e-5)


def test_openai_torchscript_file_and_wrong_architecture(tmp_path):
    """OpenAI publishes CLIP as TorchScript archives; a file of another model must be refused."""
    import open_clip

    torch.manual_seed(1)
    # OpenAI's archives hold fp16 weights, which open_clip casts to fp16 on loading: start from such values
    clip = open_clip.create_model("RN50", pretrained=None, force_quick_gelu=True).half().float()
    path = tmp_path / "RN50.pt"
    torch.jit.script(clip).save(str(path))
    loaded = backbones.build(settings("clip_rn50", weights=str(path)))
    for key, value in clip.visual.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    with pytest.raises(UsageError, match="another architecture"):
        backbones.build(settings("clip_rn101", weights=str(path)))
