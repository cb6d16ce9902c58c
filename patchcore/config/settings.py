"""The typed settings of params.yaml: one frozen pydantic model per section.

Every model forbids unknown keys, so a misspelt key is an error instead of a silent default.
Validators raise ValueError with the message the user sees (config.loader adds the key path).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    StrictBool,
    model_validator,
)

from patchcore.config.backbone import FEATURE_DIM, AggregationSettings, BackboneSettings
from patchcore.config.names import Name
from patchcore.config.sources import DatasetSpec
from patchcore.config.types import (
    BlurSigma,
    Device,
    HoldoutShare,
    Neighbours,
    NonNegative,
    PatchCount,
    Positive,
    PositiveFinite,
    Precision,
    Probability,
    Ratio,
    Section,
    Seed,
    Share,
    at_most,
)
from patchcore.errors import UsageError


class RunSelection(Section):
    """What `dvc repro` runs: one data set, its categories, the backbones to compare."""

    dataset: Name
    categories: Annotated[tuple[Name, ...], Field(min_length=1)]
    backbones: Annotated[tuple[Name, ...], Field(min_length=1)]


class ExtractSettings(Section):
    batch_size: Annotated[
        Positive, at_most(256, "images per forward pass: memory grows with it, throughput stops growing long before")
    ]
    # DataLoader processes decoding beside the forward pass
    num_workers: Annotated[NonNegative, at_most(64, "decoding processes: more than the machine's cores buys nothing")]
    train_fraction: Share = 1.0  # share of train/good used; a backbone's own train_fraction wins
    channels_last: StrictBool = False  # NHWC tensors: faster convolutions on some CPUs
    device: Device = "auto"  # where the backbone runs; decoding stays in the DataLoader's processes
    precision: Precision = "float32"  # the backbone's forward; bfloat16/float16 autocast are options


class CoresetSettings(Section):
    """The memory bank, and the good images' scores that label-free thresholds come from.

    ``holdout_folds`` (k >= 2): the training images are split into k seeded folds and every
    image is scored against a coreset of the other folds, so a threshold's quantile comes from
    all the good images while the deployed bank keeps them all. ``holdout_fraction``: the
    earlier single split, whose images stay out of the deployed bank. One of the two.
    """

    ratio: Ratio
    # only for choosing the coreset (the reference code's 128): as wide as the features it saves nothing
    projection_dim: Annotated[
        Positive, at_most(FEATURE_DIM, "it only speeds up the selection (the paper's code uses 128)")
    ]
    seed: Seed
    holdout_fraction: HoldoutShare = 0.0  # training images kept out of the bank to set the threshold
    # k-fold out-of-bank scores of every training image; 0: off. Each fold is one more selection.
    holdout_folds: Annotated[
        NonNegative, at_most(20, "each fold is one more coreset selection; 5 or 10 are the usual k")
    ] = 0
    device: Device = "auto"  # a CUDA device selects on the GPU once the bank is large enough

    @model_validator(mode="after")
    def _one_holdout(self) -> CoresetSettings:
        if self.holdout_folds == 1:
            raise ValueError(
                "'holdout_folds' must be 0 (off) or at least 2, got 1; 5 scores every training image against the other 80%"
            )
        if self.holdout_fraction > 0 and self.holdout_folds:
            raise ValueError(
                f"'holdout_fraction' ({self.holdout_fraction:g}) and 'holdout_folds' ({self.holdout_folds}) are two ways to score held-out "
                "good images; set the other one to 0"
            )
        return self


ThresholdMethod = Literal["holdout_quantile", "f1_max", "fixed"]


class ThresholdSettings(Section):
    """How the image decision threshold is chosen (evaluate.threshold).

    holdout_quantile: the ``quantile`` of the held-out good images' scores (no labels needed);
    f1_max: the F1-maximising threshold on the labelled test set (anomalib's adaptive
    threshold; chosen on test labels, so its test F1 is optimistic); fixed: ``value``.
    The pixel threshold is always label-free: by default (``pixel_method: quantile``) the
    ``pixel_quantile`` of the held-out good images' map maxima, so that share of good images shows
    no defect region; ``validation_mean_3std`` is MVTec AD 2's suggested rule, the mean + 3 std of
    every pixel of the validation split's maps (data sets with a validation split only).
    """

    method: ThresholdMethod = "holdout_quantile"
    quantile: Probability = 0.99
    value: PositiveFinite | None = None
    pixel_quantile: Probability = 0.99
    pixel_method: Literal["quantile", "validation_mean_3std"] = "quantile"

    @model_validator(mode="after")
    def _value_for_fixed(self) -> ThresholdSettings:
        if self.method == "fixed" and self.value is None:
            raise ValueError(
                "'value' is required for method 'fixed': the image score at and above which an image is anomalous"
            )
        if self.method != "fixed" and self.value is not None:
            raise ValueError(
                f"'value' is only used by method 'fixed' (method is '{self.method}'); remove it or set method: fixed"
            )
        return self


class EvaluateSettings(Section):
    blur_sigma: BlurSigma  # Gaussian smoothing of the map, input pixels
    # test patches read and searched at once: 262,144 of 1024 dimensions are 1 GiB
    query_batch: Annotated[Positive, at_most(262_144, "patches read and searched at once (1 GiB at 1024 dimensions)")]
    reweight_neighbours: Neighbours  # b of PatchCore Eq. 7; 0 or 1 turns the reweighting off
    threshold: ThresholdSettings = ThresholdSettings()
    # resamples for the confidence intervals; each recomputes AUROC and AUPRO
    bootstrap: Annotated[
        NonNegative, at_most(10_000, "1,000 to 2,000 resamples give stable 95% intervals; time grows with each")
    ]
    max_fpr: Probability  # AUPRO integration limit
    seed: Seed
    faiss_threads: Annotated[NonNegative, at_most(1024, "threads of one search; 0 takes all cores")] = (
        0  # 0: faiss's default
    )
    approximate_above: PatchCount = 0  # banks with more patches use HNSW (CPU only); 0: always exact
    device: Device = "auto"  # a CUDA device searches exactly on the GPU (torch), the CPU with faiss


def _named(entries: object) -> object:
    """Give each keyed entry its key as ``name`` (the user never writes it)."""
    if not isinstance(entries, dict):
        return entries
    out = {}
    for key, value in entries.items():
        if isinstance(value, dict) and "name" in value:
            raise ValueError(f"'{key}' must not set 'name': the key is its name")
        out[key] = {**value, "name": key} if isinstance(value, dict) else value
    return out


class ExportSettings(Section):
    """What the export stage writes beside each model (patchcore export's --format and --bank-precision)."""

    format: Literal["onnx", "openvino"] = "onnx"  # openvino: the ONNX file and its OpenVINO IR
    bank_precision: Literal["float32", "float16"] = (
        "float32"  # float16 halves the bank's bytes (README "Deploying a model")
    )


class Params(Section):
    """The whole of params.yaml."""

    run: RunSelection
    download: Annotated[dict[Name, DatasetSpec], Field(min_length=1)]
    backbones: Annotated[dict[Name, BackboneSettings], Field(min_length=1)]
    aggregation: AggregationSettings = AggregationSettings()
    extract: ExtractSettings
    coreset: CoresetSettings
    evaluate: EvaluateSettings
    export: ExportSettings = ExportSettings()

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: object) -> object:
        if isinstance(data, dict):
            data = {**data, **{k: _named(data[k]) for k in ("download", "backbones") if k in data}}
        return data

    @model_validator(mode="after")
    def _selection(self) -> Params:
        if self.run.dataset not in self.download:
            raise ValueError(
                f"unknown dataset '{self.run.dataset}' in run.dataset; allowed: {', '.join(sorted(self.download))} (keys of 'download:')"
            )
        for name in self.run.backbones:
            if name not in self.backbones:
                raise ValueError(
                    f"unknown backbone '{name}' in run.backbones; allowed: {', '.join(sorted(self.backbones))}"
                )
        return self

    def backbone(self, name: str) -> BackboneSettings:
        if name not in self.backbones:
            raise UsageError(
                f"unknown backbone '{name}'; allowed: {', '.join(sorted(self.backbones))} (params.yaml 'backbones:')"
            )
        return self.backbones[name]

    def dataset(self) -> DatasetSpec:
        return self.download[self.run.dataset]

    def category(self, name: str) -> str:
        """A category named on the command line must be one of run.categories (a plain name, so a safe path)."""
        if name not in self.run.categories:
            raise UsageError(
                f"category '{name}' is not in params.yaml run.categories ({', '.join(self.run.categories)}); add it there"
            )
        return name
