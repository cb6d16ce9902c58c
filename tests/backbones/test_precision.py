"""Lower-precision forwards (autocast) on the CPU device: the GPU path's arithmetic, checked here."""

import torch

from patchcore import backbones, config
from patchcore.datasets.images import image_transform, load_rgb

from helpers import REPO

PARAMS = config.load(REPO / "params.yaml")


def test_autocast_precisions_stay_near_float32_and_float16_nearer_than_bfloat16(sample_root):
    settings = PARAMS.backbone("efficientnet_lite0")
    loaded = backbones.build(settings)
    tap = backbones.LayerTap(loaded.model, settings.layers)
    files = sorted((sample_root / "test" / "colour").iterdir())[:3]
    images = torch.stack([image_transform(settings)(load_rgb(f)) for f in files])
    with torch.inference_mode():
        full = backbones.PatchFeatures(tap, settings, PARAMS.aggregation)(images)
        error = {}
        for precision in ("bfloat16", "float16"):
            got = backbones.PatchFeatures(tap, settings, PARAMS.aggregation, precision)(images)
            assert got.dtype == torch.float32 and got.shape == full.shape  # aggregated and stored in float32
            error[precision] = float(((got - full).norm(dim=-1) / full.norm(dim=-1)).mean())
    # float16 keeps 10 mantissa bits, bfloat16 7: about 8x the error (measured 0.9% and 9% here)
    assert 0 < error["float16"] < 0.03 and 0 < error["bfloat16"] < 0.25, error
    assert error["bfloat16"] > 3 * error["float16"], error
