import torch
import torch.nn.functional as F

from stages.core.features import aggregate


def test_shapes_follow_the_finest_grid_and_target_dim():
    maps = [torch.randn(2, 6, 8, 8), torch.randn(2, 10, 4, 4)]
    out = aggregate(maps, target_dim=4)
    assert out.shape == (2, 8, 8, 4)


def test_neighbourhood_average_resize_and_concat_when_no_reduction():
    a = torch.randn(1, 3, 6, 6)
    b = torch.randn(1, 2, 3, 3)
    out = aggregate([a, b], target_dim=5)  # 3 + 2 channels: channel pooling is the identity
    # interior patch of the first layer: plain mean of its 3x3 neighbourhood
    assert torch.allclose(out[0, 2, 3, :3], a[0, :, 1:4, 2:5].mean(dim=(1, 2)), atol=1e-6)
    # corner patch averages only the 4 real neighbours, not zero padding
    assert torch.allclose(out[0, 0, 0, :3], a[0, :, 0:2, 0:2].mean(dim=(1, 2)), atol=1e-6)
    smoothed_b = F.avg_pool2d(b, 3, 1, 1, count_include_pad=False)
    resized = F.interpolate(smoothed_b, size=(6, 6), mode="bilinear", align_corners=False)
    assert torch.allclose(out[0, :, :, 3:], resized[0].permute(1, 2, 0), atol=1e-6)


def test_channel_pooling_averages_adjacent_channels():
    flat = torch.arange(8, dtype=torch.float32).reshape(1, 8, 1, 1).expand(1, 8, 3, 3).contiguous()
    out = aggregate([flat], target_dim=4)
    assert torch.allclose(out[0, 1, 1], torch.tensor([0.5, 2.5, 4.5, 6.5]))
