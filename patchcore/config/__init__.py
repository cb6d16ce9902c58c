"""Typed settings: params.yaml and the model card, validated once per command."""

from patchcore.config.backbone import GeometrySettings
from patchcore.config.loader import DEFAULT_PARAMS, load, validate
from patchcore.config.settings import (
    AggregationSettings,
    BackboneSettings,
    CoresetSettings,
    EvaluateSettings,
    ExtractSettings,
    Params,
    RunSelection,
)
from patchcore.config.sources import SOURCES, DatasetSpec

__all__ = [
    "DEFAULT_PARAMS",
    "SOURCES",
    "AggregationSettings",
    "BackboneSettings",
    "CoresetSettings",
    "DatasetSpec",
    "EvaluateSettings",
    "ExtractSettings",
    "GeometrySettings",
    "Params",
    "RunSelection",
    "load",
    "validate",
]
