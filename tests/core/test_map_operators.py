"""The anomaly map as two matrix products equals scoring.anomaly_map (upsample, then scipy's blur)."""

import numpy as np
import pytest

from patchcore.core.map_operators import map_operators
from patchcore.core.scoring import anomaly_map


@pytest.mark.parametrize(
    "grid, size, sigma",
    [((28, 28), 224, 4.0), ((33, 33), 260, 4.0), ((7, 5), 40, 0.0), ((3, 4), 6, 4.0), ((12, 9), 50, 1.5)],
)
def test_rows_grid_cols_is_the_anomaly_map(grid, size, sigma):
    g = np.random.default_rng(0).random(grid).astype(np.float32) * 5
    rows, cols = map_operators(grid, size, sigma)
    expected = anomaly_map(g, size, sigma)
    assert rows.shape == (size, grid[0]) and cols.shape == (size, grid[1])
    np.testing.assert_allclose(rows @ g @ cols.T, expected, rtol=0, atol=1e-5 * float(np.ptp(expected) + 1))
