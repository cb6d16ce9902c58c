import pytest
import torch
import torch.nn.functional as F
from reference import reference_features

from stages.core.features import aggregate

# the project's formulation before the reference one became the default
OLD = {"border": "valid", "layer_weighting": "channels"}


def test_shapes_follow_the_finest_grid_and_target_dim():
    maps = [torch.randn(2, 6, 8, 8), torch.randn(2, 10, 4, 4)]
    for variant in ({}, OLD):
        out = aggregate(maps, target_dim=4, **variant)
        assert out.shape == (2, 8, 8, 4)


@pytest.mark.parametrize(
    ("channels", "layer_dim", "target_dim"), [((6, 10), 16, 8), ((512, 1024), 1024, 1024), ((48, 120), 168, 168), ((5, 7), 7, 11)]
)
def test_default_is_the_reference_formulation(channels, layer_dim, target_dim):
    torch.manual_seed(0)
    maps = [torch.randn(2, channels[0], 8, 8), torch.randn(2, channels[1], 4, 4)]
    expected = reference_features(maps, layer_dim, target_dim)
    got = aggregate(maps, target_dim, layer_dim)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


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
