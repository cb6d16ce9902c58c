"""Images -> patch features, batch by batch: the extraction loop shared by both engines.

The local engine runs it over a whole split; a Ray worker runs it over one shard. With one
network input per image (resize_crop, whole) the batches are the same consecutive groups of
``batch_size`` images either way (shards start on batch boundaries), so both compute the same
bytes; with tiles a shard's batches start at its first image's first tile.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from patchcore.backbones.patches import PatchFeatures
from patchcore.config import BackboneSettings, ExtractSettings
from patchcore.datasets.images import load_rgb, normalised, readable, view_inputs
from patchcore.errors import UsageError


class ImageFiles(Dataset):
    """Image files, or their bytes (a Ray worker gets bytes: no shared file system needed)."""

    def __init__(self, sources: list[Path] | list[bytes], settings: BackboneSettings, names: list[str] | None = None):
        self.sources, self.settings = sources, settings
        self.names = names or [str(s) for s in sources]  # what a message calls each image

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int):
        source = self.sources[i]
        try:
            # returned, not raised: a DataLoader worker would wrap the error in its traceback text
            with readable(self.names[i]):
                image = load_rgb(io.BytesIO(source) if isinstance(source, bytes) else source)  # type: ignore[arg-type]
            pixels, boxes = view_inputs(self.settings, image, self.names[i])
            return torch.from_numpy(pixels), torch.tensor([image.height, image.width], dtype=torch.int32), boxes
        except UsageError as exc:
            return None, str(exc), None


class Started(NamedTuple):
    """The images whose first input is in a batch: their original (height, width) sizes (n, 2) and their inputs'
    boxes (views, 4), in order."""

    sizes: torch.Tensor
    boxes: np.ndarray


def _started(sizes: list[torch.Tensor], boxes: list[np.ndarray]) -> Started:
    if not sizes:  # a batch inside one picture's tiles: no picture begins in it
        return Started(torch.zeros((0, 2), dtype=torch.int32), np.zeros((0, 4)))
    return Started(torch.stack(sizes), np.concatenate(boxes))


def grouped(loader: DataLoader, batch_size: int, pin: bool):
    """(inputs, Started) batches of ``batch_size`` network inputs from the loader's images, in order.

    An image of many tiles spans batches (its features stream, the image is never held as activations whole); with
    one input per image a batch is ``batch_size`` images. The workers decode one image each, so all of them are
    busy even when a split has fewer batches than there are workers (a GPU needs many).
    """
    parts: list[torch.Tensor] = []
    sizes: list[torch.Tensor] = []
    boxes: list[np.ndarray] = []
    count = 0
    for pixels, hw, box in loader:
        if pixels is None:
            raise UsageError(hw)  # the image's one-line message
        sizes.append(hw)
        boxes.append(np.asarray(box, dtype=np.float64))  # the loader hands numpy arrays over as tensors
        first = 0
        while first < len(pixels):
            take = min(batch_size - count, len(pixels) - first)
            parts.append(pixels[first : first + take])
            count, first = count + take, first + take
            if count == batch_size:
                batch = torch.cat(parts)
                yield (batch.pin_memory() if pin else batch), _started(sizes, boxes)
                parts, sizes, boxes, count = [], [], [], 0
    if count:
        batch = torch.cat(parts)
        yield (batch.pin_memory() if pin else batch), _started(sizes, boxes)


def feature_batches(loader: DataLoader, features: PatchFeatures, device: torch.device, extract: ExtractSettings):
    """(patches on the host, sizes, ready event) per batch, the next batch queued on the device first.

    On a GPU the forward of batch i + 1 then runs while the caller writes batch i to disk;
    on the CPU every step is synchronous and this is the plain loop.
    """
    fmt = torch.channels_last if extract.channels_last else torch.contiguous_format
    cuda = device.type == "cuda"
    pending = None
    for pixels, hw in grouped(loader, extract.batch_size, pin=cuda):
        images = normalised(pixels.to(device, non_blocking=True), features.settings)
        out = features(images.contiguous(memory_format=fmt))
        host = out.to("cpu", non_blocking=True) if cuda else out
        ready = torch.cuda.Event() if cuda else None
        if ready is not None:
            ready.record()
        if pending is not None:
            yield pending
        pending = (host, hw, ready)
    if pending is not None:
        yield pending


def loader(
    sources: list[Path] | list[bytes], settings: BackboneSettings, workers: int, names: list[str] | None = None
) -> DataLoader:
    """One image per worker task: all workers stay busy even when a split has few batches."""
    return DataLoader(
        ImageFiles(sources, settings, names),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=8 if workers else None,
    )


def host_batches(
    sources: list[Path] | list[bytes],
    features: PatchFeatures,
    device: torch.device,
    extract: ExtractSettings,
    names: list[str] | None = None,
) -> Iterator:
    """(patches (B, H, W, D) float32 on the host, Started) per batch of B network inputs, in order."""
    for patches, hw, ready in feature_batches(
        loader(sources, features.settings, extract.num_workers, names), features, device, extract
    ):
        if ready is not None:
            ready.synchronize()
        yield patches, hw
