"""Images -> patch features, batch by batch: the extraction loop shared by both engines.

The local engine runs it over a whole split; a Ray worker runs it over one shard. The
batches are the same consecutive groups of ``batch_size`` images either way (shards start on
batch boundaries), so both compute the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from patchcore.backbones.patches import PatchFeatures
from patchcore.config import BackboneSettings, ExtractSettings
from patchcore.datasets.images import image_transform, load_rgb, readable
from patchcore.errors import UsageError


class ImageFiles(Dataset):
    """Image files, or their bytes (a Ray worker gets bytes: no shared file system needed)."""

    def __init__(self, sources: list[Path] | list[bytes], settings: BackboneSettings, names: list[str] | None = None):
        self.sources, self.transform = sources, image_transform(settings)
        self.names = names or [str(s) for s in sources]  # what a message calls each image

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int):
        source = self.sources[i]
        try:
            # returned, not raised: a DataLoader worker would wrap the error in its traceback text
            with readable(self.names[i]):
                image = load_rgb(io.BytesIO(source) if isinstance(source, bytes) else source)  # type: ignore[arg-type]
            return self.transform(image), torch.tensor([image.height, image.width], dtype=torch.int32)
        except UsageError as exc:
            return None, str(exc)


def grouped(loader: DataLoader, batch_size: int, pin: bool):
    """Single images from the loader's workers, stacked into batches here.

    The workers decode one image each instead of one whole batch each, so all of them are
    busy even when a split has fewer batches than there are workers (a GPU needs many).
    """
    images: list[torch.Tensor] = []
    sizes: list[torch.Tensor] = []
    for image, hw in loader:
        if image is None:
            raise UsageError(hw)  # the image's one-line message
        images.append(image)
        sizes.append(hw)
        if len(images) == batch_size:
            batch = torch.stack(images)
            yield (batch.pin_memory() if pin else batch), torch.stack(sizes)
            images, sizes = [], []
    if images:
        batch = torch.stack(images)
        yield (batch.pin_memory() if pin else batch), torch.stack(sizes)


def feature_batches(loader: DataLoader, features: PatchFeatures, device: torch.device, extract: ExtractSettings):
    """(patches on the host, sizes, ready event) per batch, the next batch queued on the device first.

    On a GPU the forward of batch i + 1 then runs while the caller writes batch i to disk;
    on the CPU every step is synchronous and this is the plain loop.
    """
    fmt = torch.channels_last if extract.channels_last else torch.contiguous_format
    cuda = device.type == "cuda"
    pending = None
    for images, hw in grouped(loader, extract.batch_size, pin=cuda):
        out = features(images.to(device, non_blocking=True).contiguous(memory_format=fmt))
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
    """(patches (B, H, W, D) float32 on the host, sizes (B, 2)) per batch, in order."""
    for patches, hw, ready in feature_batches(
        loader(sources, features.settings, extract.num_workers, names), features, device, extract
    ):
        if ready is not None:
            ready.synchronize()
        yield patches, hw
