"""The extraction loop's batches: network inputs of consecutive pictures, ``batch_size`` at a time, whatever each
picture's count of tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchcore.backbones.stream import grouped


def _pictures(counts: list[int]):
    """What the loader yields per picture: its inputs (numbered by picture and tile), size and boxes."""
    for p, k in enumerate(counts):
        pixels = torch.zeros((k, 2, 2, 3), dtype=torch.uint8)
        pixels[:, 0, 0, 0] = p
        pixels[:, 0, 0, 1] = torch.arange(k)
        yield pixels, torch.tensor([p, 100 + p], dtype=torch.int32), np.full((k, 4), float(p))


@pytest.mark.parametrize("counts", [[1, 1, 1, 1, 1], [7, 1, 12, 3], [2, 2, 2], [20]])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_batches_hold_batch_size_inputs_in_order_and_each_picture_once(counts, batch_size):
    batches = list(grouped(_pictures(counts), batch_size, pin=False))
    inputs = torch.cat([b for b, _ in batches])
    expected = [(p, t) for p, k in enumerate(counts) for t in range(k)]
    assert [(int(x[0, 0, 0]), int(x[0, 0, 1])) for x in inputs] == expected
    assert all(len(b) == batch_size for b, _ in batches[:-1]) and 0 < len(batches[-1][0]) <= batch_size
    sizes = torch.cat([s.sizes for _, s in batches])
    assert sizes[:, 0].tolist() == list(range(len(counts)))  # each picture's size once, with its first input's batch
    boxes = np.concatenate([s.boxes for _, s in batches])
    assert boxes[:, 0].tolist() == [float(p) for p, _ in expected]
