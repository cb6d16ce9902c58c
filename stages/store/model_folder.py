"""The model folder features/<dataset>/<category>/<backbone>/: its files and model.json's schema.

The one place that knows the folder's file names and what model.json holds; the stages and
predict read and write a model only through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

from ..config import AggregationSettings, BackboneSettings, validate
from ..config.settings import Section
from ..errors import UsageError
from . import paths
from .atomic import write_json


class ModelCard(Section):
    """model.json: what predict needs to score new images exactly as evaluate did."""

    backbone: BackboneSettings
    aggregation: AggregationSettings
    weights: StrictStr
    dataset: StrictStr
    category: StrictStr
    threshold: float | None  # None when no training image was held out
    reweight_neighbours: StrictInt
    blur_sigma: float
    heat_scale: StrictFloat
    approximate_above: StrictInt
    channels_last: StrictBool  # predict must compute exactly as extract did


@dataclass(frozen=True)
class ModelFolder:
    root: Path

    @classmethod
    def of(cls, dataset: str, category: str, backbone: str) -> ModelFolder:
        return cls(paths.feature_dir(dataset, category, backbone))

    @property
    def train(self) -> Path:
        return self.root / "train.h5"

    @property
    def test(self) -> Path:
        return self.root / "test.h5"

    @property
    def bank(self) -> Path:
        return self.root / "bank.h5"

    @property
    def card(self) -> Path:
        return self.root / "model.json"

    def require(self, files: tuple[Path, ...], fix: str) -> None:
        for path in files:
            if not path.is_file():
                raise UsageError(f"{path} not found; {fix}")

    def write_card(self, card: ModelCard) -> None:
        write_json(self.card, card.model_dump(mode="json"))

    def read_card(self) -> ModelCard:
        fix = "rerun 'dvc repro' to rebuild it"
        self.require((self.card,), "MODEL is a folder written by 'dvc repro', e.g. features/<dataset>/<category>/<backbone>")
        try:
            data = json.loads(self.card.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise UsageError(f"{self.card}: corrupted model file ({exc.__class__.__name__}); {fix}") from None
        try:
            return validate(ModelCard, data, str(self.card))
        except UsageError as exc:
            raise UsageError(f"{exc}; {fix}") from None

    def read_bank(self, target_dim: int) -> np.ndarray:
        self.require((self.bank,), "MODEL is a folder written by 'dvc repro', e.g. features/<dataset>/<category>/<backbone>")
        try:
            with h5py.File(self.bank, "r") as f:
                bank = f["bank"][()]
        except (OSError, KeyError) as exc:
            raise UsageError(f"{self.bank}: corrupted memory bank ({exc.__class__.__name__}); rerun 'dvc repro' to rebuild it") from None
        if bank.ndim != 2 or bank.shape[1] != target_dim:
            raise UsageError(f"{self.bank}: bank of {bank.shape} does not fit the model's {target_dim}-dim features; rerun 'dvc repro'")
        return bank
