"""Reading rows back from the deterministic HDF5 files."""

import h5py
import numpy as np

from patchcore.store import h5io


def test_take_rows_reads_what_point_selection_reads(tmp_path):
    values = np.random.default_rng(0).standard_normal((1000, 8)).astype(np.float32)
    with h5io.create(tmp_path / "a.h5") as f:
        h5io.create_rows(f, "patches", values.shape, 49)[:] = values
    rows = np.sort(np.random.default_rng(1).choice(1000, 137, replace=False))
    with h5py.File(tmp_path / "a.h5") as f:
        for block in (64, 1000, 4096):  # rows spread over many blocks; one block; a block past the end
            assert np.array_equal(h5io.take_rows(f["patches"], rows, block), values[rows])
        assert h5io.take_rows(f["patches"], rows[:0]).shape == (0, 8)
