"""Typed settings: params.yaml and the model card, validated once per command."""

from .loader import DEFAULT_PARAMS, load, validate
from .settings import (
    AggregationSettings,
    BackboneSettings,
    CoresetSettings,
    EvaluateSettings,
    ExtractSettings,
    Params,
    RunSelection,
)
from .sources import SOURCES, DatasetSpec

__all__ = [
    "DEFAULT_PARAMS",
    "SOURCES",
    "AggregationSettings",
    "BackboneSettings",
    "CoresetSettings",
    "DatasetSpec",
    "EvaluateSettings",
    "ExtractSettings",
    "Params",
    "RunSelection",
    "load",
    "validate",
]
