"""Stage `coreset`: the memory bank, a greedy coreset of the training patches."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from . import h5io
from .atomic import atomic_path
from .params import CoresetSettings
from .sampling import coreset_size, greedy_kcenter, project, projection_matrix, start_index

READ_ROWS = 65536


def run(train_h5: Path, out: Path, settings: CoresetSettings) -> dict:
    with h5py.File(train_h5, "r") as f:
        patches = f["patches"]
        n, d = patches.shape
        matrix = projection_matrix(d, settings.projection_dim, settings.seed)
        projected = project((block for _, block in h5io.iter_rows(patches, READ_ROWS)), matrix)
        picks = greedy_kcenter(projected, coreset_size(n, settings.ratio), start_index(n, settings.seed))
        order = np.sort(picks)  # h5py reads fancy indices in increasing order only
        bank = patches[order]
        attrs = {k: f.attrs[k] for k in f.attrs if k not in ("split",)}
    with atomic_path(out, ".h5") as tmp:
        with h5io.create(tmp) as g:
            h5io.write_array(g, "bank", bank)
            h5io.write_array(g, "indices", order)
            h5io.set_attrs(g, {**attrs, "coreset_ratio": settings.ratio, "projection_dim": settings.projection_dim, "seed": settings.seed, "train_patches": n})
    return {"bank_size": int(len(order)), "train_patches": int(n)}
