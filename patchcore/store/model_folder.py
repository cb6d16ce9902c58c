"""The model folder features/<dataset>/<category>/<backbone>/: its files and model.json's schema.

The one place that knows the folder's file names and what model.json holds; the stages and
predict read and write a model only through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, StrictBool, StrictStr, model_validator

from patchcore.config import AggregationSettings, BackboneSettings, validate
from patchcore.config.settings import ThresholdMethod
from patchcore.config.types import (
    BlurSigma,
    Neighbours,
    NonNegativeReal,
    PatchCount,
    PositiveFinite,
    Precision,
    Section,
)
from patchcore.errors import UsageError
from patchcore.store import h5io, paths
from patchcore.store.atomic import write_json
from patchcore.store.output_set import settle


def _with_grid(fp: dict) -> dict:
    """The fingerprint is compared whole; its grid is also read (the patch map's height and width)."""
    grid = fp.get("grid")
    if not (isinstance(grid, list) and len(grid) == 2 and all(type(v) is int and 1 <= v <= 1024 for v in grid)):
        raise ValueError(
            f"'grid' must be the patch map's [height, width], two integers in [1, 1024], got {str(grid)[:40]}"
        )
    return fp


class ModelCard(Section):
    """model.json: what predict needs to score new images exactly as evaluate did."""

    backbone: BackboneSettings
    aggregation: AggregationSettings
    weights: StrictStr
    dataset: StrictStr
    category: StrictStr
    data: dict = {}  # where the training images came from (the download stage's provenance)
    # A model folder travels (a colleague's, a registry's): every number is checked as params.yaml's are,
    # since NaN, infinite or negative thresholds and scales would silently call every image good or bad.
    threshold: PositiveFinite | None  # None when no training image was held out
    threshold_method: ThresholdMethod = "holdout_quantile"  # evaluate.threshold.method that chose it
    score_range: tuple[NonNegativeReal, NonNegativeReal] | None = (
        None  # held-out good images' lowest and highest scores
    )
    pixel_threshold: PositiveFinite | None = None  # map value at and above which a pixel is defective (label-free)
    connectivity: Literal[8] = 8  # defect regions are 8-connected
    reweight_neighbours: Neighbours
    blur_sigma: BlurSigma
    heat_scale: PositiveFinite
    approximate_above: PatchCount
    channels_last: StrictBool  # predict must compute exactly as extract did
    precision: Precision = "float32"  # likewise; cards written before precision existed were float32
    fingerprint: Annotated[
        dict, AfterValidator(_with_grid)
    ]  # the features' identity; bank.h5 carries the same (see fingerprint())

    @model_validator(mode="after")
    def _ordered_range(self) -> ModelCard:
        if self.score_range is not None and self.score_range[0] > self.score_range[1]:
            raise ValueError(f"'score_range' must be [lowest, highest], got {list(self.score_range)}")
        return self


def fingerprint(
    settings: BackboneSettings,
    weights: str,
    features: dict,
    grid: tuple[int, int],
    precision: str,
    dataset: str,
    category: str,
) -> dict:
    """Everything that makes two patch features comparable: the network, its weights, the
    input geometry, the layers and how they are aggregated, the precision of the forward pass,
    the feature width and the grid; and which data set and category they describe, so that a
    bank of another category of the same backbone is not taken for this one's. The device is
    not in it: a GPU's features differ from the CPU's only by rounding, and a bank built on one
    may score images on the other."""
    # the geometry only where it is not the default: features and models made before it existed stay valid
    geometry = {"geometry": settings.geometry.describe(settings.crop)} if settings.multi_view else {}
    return {
        **geometry,
        "backbone": settings.name,
        "arch": settings.arch,
        "weights": weights,
        "layers": list(settings.layers),
        "resize": settings.resize,
        "crop": settings.crop,
        "interpolation": settings.interpolation,
        "mean": list(settings.mean),
        "std": list(settings.std),
        "feature_dim": settings.target_dim,
        "features": features,
        "grid": [int(grid[0]), int(grid[1])],
        "precision": precision,
        "dataset": dataset,
        "category": category,
    }


def fingerprint_attr(fp: dict) -> str:
    return json.dumps(fp, sort_keys=True)


def compare(fp_a: dict, where_a: str, fp_b: dict, where_b: str) -> None:
    """One line naming every difference when two fingerprints differ."""
    if fp_a == fp_b:
        return
    keys = sorted(set(fp_a) | set(fp_b))
    diffs = "; ".join(
        f"{k}: {fp_a.get(k)!r} in {where_a} vs {fp_b.get(k)!r} in {where_b}" for k in keys if fp_a.get(k) != fp_b.get(k)
    )
    raise UsageError(
        f"{where_a} and {where_b} come from different features ({diffs}); rebuild the model with 'dvc repro'"
    )


@dataclass(frozen=True)
class ModelFolder:
    root: Path
    stage_key: str | None = None  # "<category>-<backbone>", the DVC stages' matrix key

    @classmethod
    def of(cls, dataset: str, category: str, backbone: str) -> ModelFolder:
        return cls(paths.feature_dir(dataset, category, backbone), f"{category}-{backbone}")

    def rebuild(self, path: Path) -> str:
        """How to rebuild one of the folder's files."""
        stage = {"train.h5": "extract", "test.h5": "extract", "bank.h5": "coreset"}.get(path.name, "evaluate")
        if self.stage_key is None:
            return "rebuild the model with 'dvc repro'"
        return f"rebuild it with 'dvc repro -f -s {stage}@{self.stage_key}', then 'dvc repro'"

    def features_fingerprint(self, path: Path) -> dict:
        """The fingerprint a features or bank file carries."""
        with h5io.reading(path, self.rebuild(path), attrs=("fingerprint",)) as f:
            try:
                return dict(json.loads(str(f.attrs["fingerprint"])))
            except (TypeError, ValueError, RecursionError):
                raise UsageError(f"{path}: its fingerprint attribute is corrupt; {self.rebuild(path)}") from None

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
        self.require(
            (self.card,), "MODEL is a folder written by 'dvc repro', e.g. features/<dataset>/<category>/<backbone>"
        )
        try:
            data = json.loads(self.card.read_text())
        except (
            ValueError,
            OSError,
            RecursionError,
        ) as exc:  # JSONDecodeError, UnicodeDecodeError; nesting past the stack
            raise UsageError(f"{self.card}: corrupted model file ({exc.__class__.__name__}); {fix}") from None
        try:
            return validate(ModelCard, data, str(self.card))
        except UsageError as exc:
            raise UsageError(f"{exc}; {fix}") from None

    def read_bank(self, target_dim: int) -> np.ndarray:
        self.require(
            (self.bank,), "MODEL is a folder written by 'dvc repro', e.g. features/<dataset>/<category>/<backbone>"
        )
        fix = f"corrupted memory bank: {self.rebuild(self.bank)}"
        with h5io.reading(self.bank, fix, datasets=("bank",)) as f:
            bank = h5io.check_rows(f["bank"][()], self.bank, "bank", fix)
        if bank.ndim != 2 or bank.shape[1] != target_dim:
            raise UsageError(
                f"{self.bank}: bank of {bank.shape} does not fit the model's {target_dim}-dim features; rerun 'dvc repro'"
            )
        return bank


def load_model(model_dir: Path) -> tuple[ModelCard, np.ndarray]:
    """The model card and the bank, refused unless both describe the same features."""
    folder = ModelFolder(Path(model_dir))
    settle([folder.card, folder.bank])  # evaluate killed between its renames: its model.json with the rest of its set
    card = folder.read_card()
    settings = card.backbone
    described = fingerprint(
        settings,
        card.weights,
        card.aggregation.describe(settings.feature_dim),
        card.fingerprint.get("grid", (0, 0)),
        card.precision,
        card.dataset,
        card.category,
    )
    compare(described, f"{folder.card} (its settings)", card.fingerprint, f"{folder.card} (its fingerprint)")
    compare(card.fingerprint, str(folder.card), folder.features_fingerprint(folder.bank), str(folder.bank))
    return card, folder.read_bank(settings.target_dim)
