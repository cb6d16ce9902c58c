"""Image decoding and the resize/crop/normalise steps shared by extraction and evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from .params import BackboneSettings


def image_transform(settings: BackboneSettings) -> T.Compose:
    return T.Compose(
        [
            T.ToImage(),
            T.Resize(settings.resize, interpolation=T.InterpolationMode(settings.interpolation), antialias=True),
            T.CenterCrop(settings.crop),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=list(settings.mean), std=list(settings.std)),
        ]
    )


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def load_mask(path: Path | None, settings: BackboneSettings) -> np.ndarray:
    """A binary mask in the network's input geometry (resize + centre crop), as bool (crop, crop).

    An image without a mask (a good one) gets an all-false mask.
    """
    if path is None:
        return np.zeros((settings.crop, settings.crop), dtype=bool)
    with Image.open(path) as image:
        mask = torch.from_numpy(np.asarray(image.convert("L")) > 0)[None].to(torch.uint8)
    mask = TF.resize(mask, settings.resize, interpolation=T.InterpolationMode.NEAREST)
    mask = TF.center_crop(mask, settings.crop)
    return mask[0].numpy().astype(bool)
