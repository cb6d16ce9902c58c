"""Image decoding and the resize/crop/normalise steps shared by extraction, evaluation and predict."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from patchcore.config import BackboneSettings
from patchcore.errors import UsageError

# the one RGB conversion and crop box, shared with the copyable runtime so a line PC does exactly as extract did
from patchcore.runtime import patchcore_onnx as runtime
from patchcore.runtime.patchcore_onnx import to_rgb


def _geometry(settings: BackboneSettings) -> list:
    """Resize and centre-crop to the network's input, the steps every view of an image shares."""
    return [
        T.Resize(settings.resize, interpolation=T.InterpolationMode(settings.interpolation), antialias=True),
        T.CenterCrop(settings.crop),
    ]


def image_transform(settings: BackboneSettings) -> T.Compose:
    """PIL image -> the normalised tensor the network takes.

    The resize runs on the PIL image (Pillow's antialiased filters), as the reference code's
    transforms do; the uint8 picture it makes is what an exported model takes as input, so a
    program with Pillow alone feeds it the very pixels extract saw.
    """
    return T.Compose(
        [
            *_geometry(settings),
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=list(settings.mean), std=list(settings.std)),
        ]
    )


def network_view(settings: BackboneSettings) -> T.Compose:
    """PIL image -> PIL image as the network sees it (resized and cropped), for pictures."""
    return T.Compose(_geometry(settings))


# MVTec images are at most 1024 x 1024; anything past the runtime's limit is refused as a decompression bomb
MAX_PIXELS = runtime.MAX_PIXELS


def views_of(settings: BackboneSettings, width: int, height: int) -> list[runtime.View]:
    """The network inputs of a (width, height) image under the backbone's geometry: the runtime's, one definition."""
    return runtime.views(width, height, settings.geometry.describe(settings.crop), settings.resize, settings.crop)


def checked_views(settings: BackboneSettings, size: tuple[int, int], name: object) -> list[runtime.View]:
    """The network inputs of an image of (width, height) ``size``, refused past MAX_VIEWS (its tiles' features would
    not fit the memory a category is sized for)."""
    inputs = views_of(settings, *size)
    if len(inputs) > runtime.MAX_VIEWS:
        raise UsageError(
            f"{name}: {size[0]} x {size[1]} pixels makes {len(inputs)} tiles at backbones.{settings.name}.geometry.scale "
            f"{settings.geometry.describe(settings.crop).get('scale')}, more than {runtime.MAX_VIEWS}; lower the scale"
        )
    return inputs


def view_inputs(settings: BackboneSettings, image: Image.Image, name: object) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image -> its (k, S, S, 3) uint8 network inputs and their (k, 4) boxes (the image in each input's
    pixels), as the copyable runtime cuts them."""
    inputs = checked_views(settings, image.size, name)
    pixels = runtime.view_pixels(image, inputs, settings.crop, settings.interpolation)
    return pixels, np.array([v.box() for v in inputs], dtype=np.float64)


class Prepared(NamedTuple):
    """One image ready for a model: its network inputs, their boxes, and the picture heatmaps are drawn on (the
    network's view with one centre crop; the image itself with whole and tiles, under its stitched map)."""

    pixels: np.ndarray  # (k, S, S, 3) uint8
    boxes: np.ndarray  # (k, 4) the image (x0, y0, x1, y1) in each input's pixels
    picture: Image.Image


def prepared(settings: BackboneSettings, image: Image.Image, name: object) -> Prepared:
    """An RGB image as predict and the service feed it to a model."""
    pixels, boxes = view_inputs(settings, image, name)
    return Prepared(pixels, boxes, image if settings.multi_view else Image.fromarray(pixels[0]))


def normalised(pixels: torch.Tensor, settings: BackboneSettings) -> torch.Tensor:
    """(k, S, S, 3) uint8 -> (k, 3, S, S) float32 normalised: image_transform's last steps, the same bytes."""
    tensor = TF.to_dtype(pixels.permute(0, 3, 1, 2), torch.float32, scale=True)
    return TF.normalize(tensor, mean=list(settings.mean), std=list(settings.std))


def check_pixels(image: Image.Image, path: Path, fix: str) -> None:
    """Refuse an opened (not yet decoded) image past MAX_PIXELS: a decompression bomb, for data sets and predict
    alike."""
    if image.width * image.height > MAX_PIXELS:
        raise UsageError(
            f"{path}: {image.width} x {image.height} pixels is beyond the {MAX_PIXELS} pixel limit (a decompression bomb?); {fix}"
        )


@contextlib.contextmanager
def readable(name: object, fix: str = "replace it or download the data set again") -> Iterator[None]:
    """A damaged image or mask (PIL raises OSError, SyntaxError, ValueError...) as one line naming it."""
    try:
        yield
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{name}: not a readable image ({exc.__class__.__name__}: {exc}); {fix}") from None


def load_rgb(path: Path) -> Image.Image:
    """An image as RGB, refused past MAX_PIXELS like every data set's images."""
    with Image.open(path) as image:
        check_pixels(image, path, "resize it")
        return to_rgb(image)


def mask_array(image: Image.Image) -> np.ndarray:
    """A mask as bool (height, width): any non-zero pixel is defective (MVTec: 0/255, others 0/1)."""
    if image.mode in ("P", "PA", "RGBA", "LA", "CMYK"):
        image = image.convert("RGB")  # never let an opaque alpha channel mark every pixel
    values = np.asarray(image)
    return np.asarray(values.reshape(values.shape[0], values.shape[1], -1).any(axis=2))


def network_mask(mask: np.ndarray, settings: BackboneSettings) -> np.ndarray:
    """A (height, width) bool mask in the network's input geometry (resize + centre crop), as bool (crop, crop)."""
    tensor = torch.from_numpy(mask)[None].to(torch.uint8)
    tensor = TF.resize(tensor, settings.resize, interpolation=T.InterpolationMode.NEAREST)
    tensor = TF.center_crop(tensor, settings.crop)
    return tensor[0].numpy().astype(bool)


def load_full_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A binary mask at its own size, as bool (height, width); it must be its image's (height, width) ``size``."""
    with Image.open(path) as image:
        check_pixels(image, path, "resize it to its image's size")
        mask = mask_array(image)
    if mask.shape != size:
        raise UsageError(
            f"{path}: the mask is {mask.shape[1]} x {mask.shape[0]} pixels but its image is {size[1]} x {size[0]}; "
            "a mask must have its image's size"
        )
    return mask
