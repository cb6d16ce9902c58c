"""The settings of params.yaml that make a patch feature: a backbone (``backbones:``) and the aggregation."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictInt, StrictStr, model_validator

from patchcore.config.names import Name
from patchcore.config.types import Positive, Real, Scale, Section, Share, at_most

# a patch feature is pooled from the chosen layers' channels (WideResNet50 layer2 + layer3: 1536,
# CLIP RN50x16's: 2304); pooling to more dimensions than there are channels only repeats values
FEATURE_DIM = 4096
FEATURE_WHY = "a patch feature is pooled from the layers' channels (WideResNet50: 1536); more only repeats values"


RGB = tuple[Real, Real, Real]


def _covering(value: int) -> int:
    if value < 0:
        raise ValueError(f"must be 0 or more pixels, got {value!r}: a negative overlap leaves pixels between tiles")
    return value


class GeometrySettings(Section):
    """How an image becomes the network's inputs (the runtime's ``views``): one centre crop, the whole image in one
    padded input, or tiles that cover every pixel."""

    name: Literal["resize_crop", "whole", "tiles"] = "resize_crop"
    scale: Scale | None = None  # tiles: the image is resized by this first (default 1, its own pixels)
    overlap: Annotated[StrictInt, AfterValidator(_covering)] | None = (
        None  # tiles: at least this many pixels shared by neighbouring tiles (default 64)
    )

    @model_validator(mode="after")
    def _tiles_only(self) -> GeometrySettings:
        if self.name != "tiles":
            for key in ("scale", "overlap"):
                if getattr(self, key) is not None:
                    raise ValueError(f"'{key}' applies to tiles only; remove it or set name: tiles")
        return self

    def describe(self, crop: int) -> dict:
        """The geometry as the runtime's ``views`` takes it, defaults filled in."""
        if self.name != "tiles":
            return {"name": self.name}
        overlap = 64 if self.overlap is None else self.overlap
        return {"name": "tiles", "scale": 1.0 if self.scale is None else self.scale, "overlap": min(overlap, crop // 2)}


class BackboneSettings(Section):
    """One entry of ``backbones:``; ``name`` is its key."""

    name: Name
    arch: StrictStr  # "<library>/<model name>", e.g. "timm/tf_efficientnet_lite2"
    weights: StrictStr  # "pretrained", "random", or a path to a weights file
    layers: Annotated[tuple[StrictStr, ...], Field(min_length=1)]
    # MVTec AD's largest images are 1024 px; the stride-8 map, so the patches and the bank, grow with its square
    resize: Annotated[
        StrictInt, at_most(1024, "no MVTec AD image is larger (the paper resizes to 256); patches grow with its square")
    ]
    crop: StrictInt
    mean: RGB
    std: RGB
    # pooled from the layers' channels (WideResNet50 layer2+3: 1536): more dimensions only repeat values
    target_dim: Annotated[Positive, at_most(FEATURE_DIM, FEATURE_WHY)]
    layer_dim: Annotated[Positive, at_most(FEATURE_DIM, FEATURE_WHY)] | None = (
        None  # equal layer weighting: each layer pooled to this
    )
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"  # CLIP was trained on bicubic resizing
    train_fraction: Share | None = None  # overrides extract.train_fraction for this backbone
    geometry: GeometrySettings = GeometrySettings()  # resize_crop (the paper's) | whole | tiles

    @property
    def feature_dim(self) -> int:
        """Each layer's pooled length before the final pooling: layer_dim where set, else target_dim."""
        return self.layer_dim or self.target_dim

    @model_validator(mode="after")
    def _geometry(self) -> BackboneSettings:
        if any(v <= 0 for v in self.std):
            raise ValueError("'std' must be positive")
        if not 32 <= self.crop <= self.resize:
            raise ValueError(f"need 32 <= crop <= resize, got crop={self.crop}, resize={self.resize}")
        overlap = self.geometry.overlap
        if overlap is not None and 2 * overlap > self.crop:
            raise ValueError(
                f"'geometry.overlap' {overlap} is more than half the {self.crop} px tile: tiles would repeat rather "
                "than cover; use at most crop / 2"
            )
        return self

    @property
    def multi_view(self) -> bool:
        """Whether an image may have another input than the one centre crop: then only full-size maps make sense."""
        return self.geometry.name != "resize_crop"


def _odd(value: int) -> int:
    if value % 2 == 0:
        raise ValueError(f"must be odd (the neighbourhood is centred on its patch), got {value}")
    return value


class AggregationSettings(Section):
    """How layer maps become patch features (PatchCore section 3.1); the defaults are the reference code's."""

    # neighbourhood side, in feature-map cells; its unfolded features grow with the square
    patchsize: Annotated[
        Positive,
        at_most(
            9,
            "the paper uses 3; at 9 a neighbourhood spans a third of a 28-cell map, and its features grow with the square",
        ),
        AfterValidator(_odd),
    ] = 3
    border: Literal["zeros", "valid"] = (
        "zeros"  # zeros: zero-padded neighbourhoods (reference); valid: real neighbours only
    )
    layer_weighting: Literal["equal", "channels"] = "equal"  # equal: each layer pooled alone first (reference)

    def describe(self, layer_dim: int) -> dict:
        """What every output records about the features, like the weights."""
        return {**self.model_dump(), "layer_dim": layer_dim if self.layer_weighting == "equal" else None}
