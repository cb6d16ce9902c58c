"""Stage `download`: one category of the selected data set under data/<dataset>/<category>/."""

from __future__ import annotations

from .config import Params
from .datasets import materialise
from .store import paths


def main(params: Params, category: str) -> str:
    params.category(category)
    target = paths.data_dir(params.run.dataset, category)
    counts = materialise.run(params.dataset(), category, target)
    return f"data ready: {target} ({', '.join(f'{v} {k}' for k, v in counts.items())})"
