"""Deterministic HDF5 files: the same content always gives the same bytes.

DVC decides whether downstream stages rerun by hashing output bytes, so nothing
time- or order-dependent may enter a file: no timestamps, fixed chunking,
rows in sorted order, attributes written in a fixed order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from patchcore.errors import UsageError

STRING = h5py.string_dtype("utf-8")


def create(path: Path) -> h5py.File:
    # Fixed library version bounds: the on-disk format must not depend on the h5py build's default.
    return h5py.File(path, "w", libver=("v110", "v110"), track_order=False)


def write_strings(group: h5py.Group, name: str, values: list[str]) -> None:
    group.create_dataset(name, data=np.array(values, dtype=object), dtype=STRING, track_times=False)


def write_array(group: h5py.Group, name: str, values: np.ndarray) -> None:
    group.create_dataset(name, data=values, track_times=False)


def create_rows(group: h5py.Group, name: str, shape: tuple[int, int], rows_per_chunk: int) -> h5py.Dataset:
    # a split with no image (a category without test images) has no chunk to give: stored contiguous
    chunks = (max(1, min(rows_per_chunk, shape[0])), shape[1]) if shape[0] else None
    return group.create_dataset(name, shape=shape, dtype=np.float32, chunks=chunks, track_times=False)


def set_attrs(obj: h5py.HLObject, attrs: dict) -> None:
    for key in sorted(attrs):
        value = attrs[key]
        obj.attrs[key] = value


def read_strings(dataset: h5py.Dataset) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in dataset[()]]


def view_starts(f: h5py.File) -> np.ndarray:
    """(n + 1,) the first network input of each image of a features file, and their count last: one input per image
    unless the file holds ``views`` (tiles), each image's count of them."""
    n = f["labels"].shape[0]
    if "views" not in f:
        return np.arange(n + 1, dtype=np.int64)
    counts = np.asarray(f["views"][()], dtype=np.int64)
    if counts.shape != (n,) or (counts < 1).any():
        raise ValueError("'views' must hold one positive count per image")
    return np.concatenate([[0], np.cumsum(counts)])


def image_runs(images: np.ndarray, per_view: int, starts: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Row ranges [start, stop) covering the given sorted images, neighbours merged; ``starts`` are the images'
    first inputs (view_starts; one input each without).

    Patch files store each image's rows contiguously; reading runs instead of one image at
    a time avoids a copy per image.
    """
    runs: list[tuple[int, int]] = []
    for i in images:
        first, last = (int(i), int(i) + 1) if starts is None else (int(starts[i]), int(starts[i + 1]))
        start, stop = first * per_view, last * per_view
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], stop)
        else:
            runs.append((start, stop))
    return runs


def read_images(dataset: h5py.Dataset, images: np.ndarray, per_view: int, starts: np.ndarray | None = None):
    """The rows of the given sorted images, in order."""
    blocks = [dataset[a:b] for a, b in image_runs(images, per_view, starts)]
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def take_rows(dataset: h5py.Dataset, rows: np.ndarray, block: int = 32768) -> np.ndarray:
    """dataset[rows] for sorted ``rows``, read in contiguous blocks (twice as fast as h5py's point selection)."""
    parts = []
    for start in range(0, dataset.shape[0], block):
        inside = rows[(rows >= start) & (rows < start + block)]
        if len(inside):
            parts.append(dataset[start : min(dataset.shape[0], start + block)][inside - start])
    return np.concatenate(parts) if parts else np.zeros((0, *dataset.shape[1:]), dtype=dataset.dtype)


def stored_elsewhere(f: h5py.File, name: str) -> str | None:
    """What a dataset really is when its bytes do not live in this file (None when they do).

    A model folder may come from anyone: an external link, external raw storage or a virtual
    dataset would make reading it read another file of this machine (/etc/passwd as bank rows).
    This project writes none of them, so each is refused.
    """
    link = f.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        return f"an external link to {link.filename}"
    if isinstance(link, h5py.SoftLink):
        return f"a link to {link.path}"
    node = f[name]
    if not isinstance(node, h5py.Dataset):
        return "a group"
    if node.is_virtual:
        return "a virtual dataset"
    if node.external:
        return "stored in external files"
    return None


def check_rows(rows: np.ndarray, path: Path, name: str, fix: str) -> np.ndarray:
    """Feature rows that can be scored: some, and every value finite (a NaN row would call every image good)."""
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise UsageError(f"{path}: '{name}' holds no rows; {fix}")
    if not np.isfinite(rows).all():
        raise UsageError(f"{path}: '{name}' holds NaN or infinite values; {fix}")
    return rows


@contextlib.contextmanager
def reading(path: Path, fix: str, datasets: tuple[str, ...] = (), attrs: tuple[str, ...] = ()) -> Iterator[h5py.File]:
    """Open an intermediate for reading; a missing, truncated or foreign file is one line naming it and ``fix``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} not found; {fix}")
    try:
        with h5py.File(path, "r") as f:
            missing = [d for d in datasets if d not in f] + [f"attribute {a}" for a in attrs if a not in f.attrs]
            if missing:
                raise UsageError(f"{path}: not a file this stage can read (no {', '.join(missing)}); {fix}")
            for name in datasets:
                if (elsewhere := stored_elsewhere(f, name)) is not None:
                    raise UsageError(
                        f"{path}: dataset '{name}' is {elsewhere}, not data stored in the file itself; refused (it could read any file); {fix}"
                    )
            yield f
    except (OSError, KeyError, ValueError) as exc:
        first = (str(exc).splitlines() or [exc.__class__.__name__])[0][:120]
        raise UsageError(
            f"{path}: unreadable, truncated or corrupt ({exc.__class__.__name__}: {first}); {fix}"
        ) from None
