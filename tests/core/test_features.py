import pytest
import torch
import torch.nn.functional as F

from patchcore.core.features import aggregate

from reference import reference_features

# the project's formulation before the reference one became the default
OLD = {"border": "valid", "layer_weighting": "channels"}


def test_shapes_follow_the_finest_grid_and_target_dim():
    maps = [torch.randn(2, 6, 8, 8), torch.randn(2, 10, 4, 4)]
    for variant in ({}, OLD):
        out = aggregate(maps, target_dim=4, **variant)
        assert out.shape == (2, 8, 8, 4)


VARIANTS = [{"border": b, "layer_weighting": w} for b in ("zeros", "valid") for w in ("equal", "channels")]
# (channels per layer, grids per layer, layer_dim, target_dim, patchsize): bins that fall inside
# one channel, straddle two, or repeat inputs (target above the concatenation), three layers,
# grids that do not halve, 1x1 and 5x5 neighbourhoods
SHAPES = [
    ((6, 10), ((8, 8), (4, 4)), 16, 8, 3),
    ((512, 1024), ((6, 6), (3, 3)), 1024, 1024, 3),
    ((48, 120), ((9, 9), (5, 5)), 168, 168, 3),
    ((5, 7), ((8, 8), (4, 4)), 7, 11, 3),
    ((4, 6, 9), ((7, 5), (4, 3), (2, 2)), 10, 13, 3),
    ((3, 8), ((5, 6), (3, 3)), 40, 5, 5),
    ((12, 20), ((6, 6), (3, 3)), 12, 24, 1),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v['border']}-{v['layer_weighting']}")
@pytest.mark.parametrize(("channels", "grids", "layer_dim", "target_dim", "p"), SHAPES)
def test_every_variant_is_its_reference_formulation(variant, channels, grids, layer_dim, target_dim, p):
    torch.manual_seed(0)
    maps = [torch.randn(2, c, *g) for c, g in zip(channels, grids)]
    expected = reference_features(maps, layer_dim, target_dim, p, **variant)
    got = aggregate(maps, target_dim, layer_dim, p, **variant)
    assert got.shape == expected.shape
    # float32 rounding: the composed kernel sums in another order than the steps (largest
    # difference seen over these shapes: 2.4e-7 on values of order 1)
    assert torch.allclose(got, expected, atol=2e-6, rtol=1e-5), (got - expected).abs().max()


def test_default_zero_pads_the_border_and_weighs_layers_equally():
    a = torch.randn(1, 4, 6, 6)
    b = torch.randn(1, 4, 6, 6)
    # layer_dim 4 of 4 * 9 values: each pooled value is one channel's zero-padded 3x3 mean
    out = aggregate([a, b], target_dim=8, layer_dim=4)
    padded = F.pad(a, (1, 1, 1, 1))
    assert torch.allclose(out[0, 0, 0, :4], padded[0, :, 0:3, 0:3].mean(dim=(1, 2)), atol=1e-6)  # corner: 5 zeros
    assert torch.allclose(out[0, 3, 2, :4], a[0, :, 2:5, 1:4].mean(dim=(1, 2)), atol=1e-6)
    # a layer with 100x the channels still gets half of the feature
    wide = torch.randn(1, 400, 6, 6)
    mixed = aggregate([a, wide], target_dim=8, layer_dim=4)
    assert torch.allclose(mixed[..., :4], out[..., :4], atol=1e-6)


def test_valid_border_averages_only_real_neighbours_in_both_weightings():
    a = torch.randn(1, 3, 6, 6)
    for weighting in ("equal", "channels"):
        out = aggregate([a], target_dim=3, layer_dim=3, border="valid", layer_weighting=weighting)
        assert torch.allclose(out[0, 0, 0], a[0, :, 0:2, 0:2].mean(dim=(1, 2)), atol=1e-6)
        assert torch.allclose(out[0, 2, 3], a[0, :, 1:4, 2:5].mean(dim=(1, 2)), atol=1e-6)
    # pooling bins that straddle padded cells stay finite (no 0 / 0 at the corners)
    deeper = torch.randn(1, 5, 3, 3)
    assert torch.isfinite(aggregate([a, deeper], target_dim=5, layer_dim=7, border="valid")).all()


def test_neighbourhood_average_resize_and_concat_when_no_reduction():
    a = torch.randn(1, 3, 6, 6)
    b = torch.randn(1, 2, 3, 3)
    out = aggregate([a, b], target_dim=5, **OLD)  # 3 + 2 channels: channel pooling is the identity
    # interior patch of the first layer: plain mean of its 3x3 neighbourhood
    assert torch.allclose(out[0, 2, 3, :3], a[0, :, 1:4, 2:5].mean(dim=(1, 2)), atol=1e-6)
    # corner patch averages only the 4 real neighbours, not zero padding
    assert torch.allclose(out[0, 0, 0, :3], a[0, :, 0:2, 0:2].mean(dim=(1, 2)), atol=1e-6)
    smoothed_b = F.avg_pool2d(b, 3, 1, 1, count_include_pad=False)
    resized = F.interpolate(smoothed_b, size=(6, 6), mode="bilinear", align_corners=False)
    assert torch.allclose(out[0, :, :, 3:], resized[0].permute(1, 2, 0), atol=1e-6)


def test_channel_pooling_averages_adjacent_channels():
    flat = torch.arange(8, dtype=torch.float32).reshape(1, 8, 1, 1).expand(1, 8, 3, 3).contiguous()
    out = aggregate([flat], target_dim=4, **OLD)
    assert torch.allclose(out[0, 1, 1], torch.tensor([0.5, 2.5, 4.5, 6.5]))


def test_patchsize_must_be_odd():
    with pytest.raises(ValueError, match="odd"):
        aggregate([torch.randn(1, 2, 4, 4)], target_dim=2, patchsize=2)
