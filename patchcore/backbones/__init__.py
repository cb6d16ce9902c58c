"""Pretrained backbones: one adapter per model library, and the tap that returns mid-level feature maps."""

from patchcore.backbones.base import LoadedBackbone, WeightsStatus
from patchcore.backbones.patches import PatchFeatures, place
from patchcore.backbones.registry import ADAPTERS, Geometry, build, geometry, weights_status
from patchcore.backbones.tap import LayerTap
from patchcore.backbones.timm_lite import lite_state_dict_to_timm, lite_weights_file

__all__ = [
    "ADAPTERS",
    "Geometry",
    "LayerTap",
    "LoadedBackbone",
    "PatchFeatures",
    "WeightsStatus",
    "build",
    "geometry",
    "lite_state_dict_to_timm",
    "lite_weights_file",
    "place",
    "weights_status",
]
