import pytest
import timm
import torch
from PIL import Image
from sklearn.datasets import load_sample_image
from timm.data import ImageNetInfo

from patchcore import backbones
from patchcore.config import BackboneSettings
from patchcore.datasets.images import image_transform
from patchcore.errors import UsageError

SIZES = {0: 224, 1: 240, 2: 260}


def settings(i: int, weights: str = "pretrained", layers=("blocks.2", "blocks.4")) -> BackboneSettings:
    return BackboneSettings(
        name=f"efficientnet_lite{i}",
        arch=f"timm/tf_efficientnet_lite{i}",
        weights=weights,
        layers=layers,
        resize=SIZES[i],
        crop=SIZES[i],
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        target_dim=64,
    )


@pytest.mark.parametrize("i", [0, 1, 2])
def test_renamed_keys_match_timm_exactly(i):
    arch = f"tf_efficientnet_lite{i}"
    model = timm.create_model(arch, pretrained=False)
    path, _ = backbones.lite_weights_file(arch)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    renamed = backbones.lite_state_dict_to_timm(raw, [len(s) for s in model.blocks])
    expected = model.state_dict()
    assert set(renamed) == set(expected)
    assert all(renamed[k].shape == expected[k].shape for k in expected)
    result = model.load_state_dict(renamed, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("i", [0, 1, 2])
def test_pretrained_network_recognises_a_real_photo(i):
    """sklearn's china.jpg is a photo of a Chinese palace; ImageNet has a 'palace' class."""
    info = ImageNetInfo()
    photo = Image.fromarray(load_sample_image("china.jpg"))
    probs = {}
    for weights in ("pretrained", "random"):
        torch.manual_seed(0)
        loaded = backbones.build(settings(i, weights))
        x = image_transform(settings(i))(photo)[None]
        with torch.inference_mode():
            probs[weights] = loaded.model(x).softmax(-1)[0]
    palace = next(k for k in range(1000) if info.index_to_description(k) == "palace")
    assert int(probs["pretrained"].argmax()) == palace
    assert probs["pretrained"][palace] > 0.2
    assert probs["random"][palace] < 0.05  # the check above would fail with untrained weights
    assert "efficientnet-lite" in backbones.build(settings(i)).weights


def test_layer_tap_matches_full_forward_and_stops_early():
    loaded = backbones.build(settings(0))
    model = loaded.model
    x = torch.randn(2, 3, 224, 224)
    seen = {}
    hooks = [
        model.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: seen.__setitem__(n, o))
        for n in ("blocks.2", "blocks.4")
    ]
    with torch.inference_mode():
        model(x)
    for h in hooks:
        h.remove()
    ran_after = []
    probe = model.get_submodule("blocks.5").register_forward_hook(lambda *a: ran_after.append(1))
    with torch.inference_mode():
        maps = backbones.LayerTap(model, ("blocks.2", "blocks.4"))(x)
    probe.remove()
    assert torch.equal(maps[0], seen["blocks.2"]) and torch.equal(maps[1], seen["blocks.4"])
    assert ran_after == []  # the layers after the deepest tap were skipped
    assert maps[0].shape == (2, 40, 28, 28) and maps[1].shape == (2, 112, 14, 14)  # strides 8 and 16
    with torch.inference_mode():
        assert model(x).shape == (2, 1000)  # the tap leaves the network usable as a classifier


def test_unknown_layer_and_arch_and_weights_file_are_usage_errors(tmp_path):
    model = backbones.build(settings(0, "random")).model
    with pytest.raises(UsageError, match="unknown layer 'blocks.99'"):
        backbones.LayerTap(model, ("blocks.99",))
    bad_arch = BackboneSettings(
        name="x",
        arch="timm/resnet50",
        weights="random",
        layers=("layer2",),
        resize=224,
        crop=224,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        target_dim=8,
    )
    with pytest.raises(UsageError, match="unknown architecture"):
        backbones.build(bad_arch)
    with pytest.raises(UsageError, match="not found"):
        backbones.build(settings(0, str(tmp_path / "missing.pth")))
