"""The memory bank coreset writes: a greedy coreset of the training patches.

Label-free thresholds need scores of good images that the bank has not seen: either every
training image scored against the coresets of k - 1 folds (``holdout_folds``), or a seeded
share of the training images held out of the bank (``holdout_fraction``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from patchcore.config import CoresetSettings
from patchcore.core import devices, torch_kcenter
from patchcore.core.sampling import (
    coreset_size,
    greedy_kcenter,
    project,
    projection_matrix,
    selection_bytes,
    start_index,
)
from patchcore.datasets.layout import seeded_folds, seeded_share
from patchcore.errors import UsageError
from patchcore.store import h5io
from patchcore.store.atomic import atomic_path
from patchcore.store.output_set import output_set

CPU = torch.device("cpu")
READ_ROWS = 32768  # rows per HDF5 read: 128 MiB at 1024 dims, whatever the image size


def holdout_images(n_images: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the training images kept out of the bank."""
    if fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    held = seeded_share(n_images, fraction, seed)
    if len(held) >= n_images:
        raise UsageError(
            f"coreset.holdout_fraction {fraction} leaves no training image for the memory bank ({n_images} images); lower it"
        )
    return held


def _rows(images: np.ndarray, per_view: int, starts: np.ndarray) -> np.ndarray:
    """The train.h5 rows of the given sorted images (``starts``: their first inputs, h5io.view_starts)."""
    runs = h5io.image_runs(images, per_view, starts)
    return np.concatenate([np.arange(a, b) for a, b in runs]) if runs else np.zeros(0, dtype=np.int64)


def keeps_all(settings: CoresetSettings) -> bool:
    """Whether the coreset is every patch (ratio 1): then nothing is projected or selected,
    since every order of all the rows is sorted into the same bank."""
    return settings.ratio >= 1.0


def _select(points, settings: CoresetSettings, device: torch.device, label: str) -> np.ndarray:
    """Positions (unsorted) of the greedy coreset among ``points`` (projected rows, numpy or on ``device``)."""
    if keeps_all(settings):
        return np.arange(len(points))
    n_pick, start = coreset_size(len(points), settings.ratio), start_index(len(points), settings.seed)
    if isinstance(points, np.ndarray):
        return greedy_kcenter(points, n_pick, start, desc=label)
    with tqdm(total=n_pick, desc=f"{label} on {device}", unit="pick", mininterval=1.0) as bar:
        return torch_kcenter.greedy_kcenter(points, n_pick, start, device, bar.update)


def _projected(patches, images: np.ndarray, per_view: int, starts: np.ndarray, settings: CoresetSettings, device):
    """The images' rows projected for the selection, and the device that will select (a small bank stays on the CPU)."""
    runs = h5io.image_runs(images, per_view, starts)

    def blocks():
        # contiguous row ranges of the images, read in bounded slices (no copies)
        for start, stop in runs:
            for a in range(start, stop, READ_ROWS):
                yield patches[a : min(stop, a + READ_ROWS)]

    matrix = projection_matrix(patches.shape[1], settings.projection_dim, settings.seed)
    rows = sum(b - a for a, b in runs)
    if not torch_kcenter.on_device(device, rows):
        return project(blocks(), matrix, rows), CPU
    return torch_kcenter.project(blocks(), matrix, device), device


def _fold_jobs(folds: np.ndarray, per_view: int, starts: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Each fold's label and the rows of the other folds' images; none when ``folds`` holds none (-1 everywhere)."""
    n_folds = int(folds.max()) + 1
    return [(f"fold {k + 1}/{n_folds}", _rows(np.flatnonzero(folds != k), per_view, starts)) for k in range(n_folds)]


def available_bytes() -> int | None:
    """The memory the kernel can give without swapping (Linux MemAvailable); None where it does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_memory(rows: int, settings: CoresetSettings) -> None:
    """Refuse, in one line and before any work, a selection whose points and bookkeeping cannot fit in memory."""
    if keeps_all(settings):
        return
    need = rows * 4 * settings.projection_dim + selection_bytes(rows, settings.projection_dim)
    free = available_bytes()
    if free is not None and need > free:
        raise UsageError(
            f"coreset: selecting among {rows:,} training patches needs about {need / 2**30:.1f} GiB of memory and "
            f"{free / 2**30:.1f} GiB are available; lower backbones.<name>.geometry.scale, train on fewer images, "
            "or run the coreset stage on a machine with more memory"
        )


def _workers(jobs: int, points, device: torch.device) -> int:
    """Selections at once: one per core on the CPU (each is one sequential loop) while their memory fits, one on
    a GPU."""
    if device.type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    free = available_bytes()
    fitting = int(free // max(1, selection_bytes(*points.shape))) if free is not None else cores
    return max(1, min(jobs, cores, fitting))


def _selections(points, fold_jobs, settings: CoresetSettings, device: torch.device) -> tuple[np.ndarray, list]:
    """The deployed bank's positions among ``points`` and each fold's sorted rows.

    The selections are independent greedy loops that release the GIL, so on the CPU they run
    side by side, one per core, the deployed one (the largest) first; each copies only its
    own fold's points when it starts. The picks are those of the same loops one after another.
    ``points`` holds every image's projected rows when there are folds (k-fold keeps no image
    out of the deployed bank), so a fold's rows index it directly.
    """

    def fold(label: str, rows: np.ndarray) -> Callable[[], np.ndarray]:
        return lambda: np.sort(rows[_select(points[rows], settings, device, label)])

    tasks: list[Callable[[], np.ndarray]] = [lambda: _select(points, settings, device, "coreset")]
    tasks += [fold(label, rows) for label, rows in fold_jobs]
    workers = _workers(len(tasks), points, device)
    if workers == 1:
        done = [task() for task in tasks]
    else:
        with ThreadPoolExecutor(workers) as pool:
            done = [future.result() for future in [pool.submit(task) for task in tasks]]
    return done[0], done[1:]


def run(train_h5: Path, out: Path, settings: CoresetSettings, fix: str = "rebuild it with 'dvc repro'") -> dict:
    """Build the bank into ``out``, reserved before the work starts (a folder that cannot be written fails first)."""
    with output_set([out]):
        return _build(train_h5, out, settings, fix)


def _write_bank(out: Path, arrays: dict[str, np.ndarray], attrs: dict) -> None:
    with atomic_path(out, ".h5") as tmp:
        with h5io.create(tmp) as g:
            for name, values in arrays.items():
                h5io.write_array(g, name, values)
            h5io.set_attrs(g, attrs)


def _images(f, train_h5: Path, fix: str) -> tuple[int, np.ndarray, int]:
    """The training images, each one's first network input (h5io.view_starts), and the rows of one input."""
    try:
        starts = h5io.view_starts(f)
    except ValueError as exc:
        raise UsageError(f"{train_h5}: {exc}; {fix}") from None
    rows = f["patches"].shape[0]
    if starts[-1] == 0 or rows % int(starts[-1]):
        raise UsageError(f"{train_h5}: {rows} patch rows do not split into {int(starts[-1])} network inputs; {fix}")
    return len(starts) - 1, starts, rows // int(starts[-1])


def _build(train_h5: Path, out: Path, settings: CoresetSettings, fix: str) -> dict:
    """The bank, and the held-out good images evaluate scores for label-free thresholds.

    With ``holdout_folds`` the bank is built from every training image, and each fold's
    coreset of the other folds (the same selection at the same ratio) is stored as row
    indices, so evaluate can score every image against a bank that never saw it. A data set
    with a validation split (train.h5's ``validation_images``) holds nothing out.
    """
    device = devices.resolve(settings.device, "coreset.device")
    with h5io.reading(train_h5, fix, datasets=("patches", "labels"), attrs=("fingerprint",)) as f:
        patches = f["patches"]
        n_images, starts, per_view = _images(f, train_h5, fix)
        if int(f.attrs.get("validation_images", 0)):  # the data set's validation split calibrates: hold nothing out
            settings = settings.model_copy(update={"holdout_fraction": 0.0, "holdout_folds": 0})
        held = holdout_images(n_images, settings.holdout_fraction, settings.seed)
        bank_images = np.setdiff1d(np.arange(n_images), held)
        kept_rows = _rows(bank_images, per_view, starts)
        _check_memory(len(kept_rows), settings)
        if keeps_all(settings):  # rows with no coordinates: only their number is needed
            points, device = np.zeros((len(kept_rows), 0), dtype=np.float32), CPU
        else:
            points, device = _projected(patches, bank_images, per_view, starts, settings, device)
        folds = (
            seeded_folds(n_images, settings.holdout_folds, settings.seed)
            if settings.holdout_folds
            else np.full(n_images, -1)
        )
        picked, fold_rows = _selections(points, _fold_jobs(folds, per_view, starts), settings, device)
        order = np.sort(kept_rows[picked])
        bank = h5io.take_rows(patches, order)
        attrs = {k: f.attrs[k] for k in f.attrs if k != "split"}
    arrays = {"bank": bank, "indices": order, "holdout_images": held, "image_folds": folds.astype(np.int64)}
    # fold k's bank: the train.h5 rows fold_rows[fold_starts[k]:fold_starts[k + 1]]
    arrays["fold_rows"] = np.concatenate(fold_rows) if fold_rows else np.zeros(0, dtype=np.int64)
    arrays["fold_starts"] = np.cumsum([0] + [len(r) for r in fold_rows]).astype(np.int64)
    attrs.update(
        {
            "coreset_ratio": settings.ratio,
            "projection_dim": settings.projection_dim,
            "seed": settings.seed,
            "train_patches": len(kept_rows),
            "holdout_fraction": settings.holdout_fraction,
            "holdout_folds": len(fold_rows),
            "coreset_device": devices.describe(device),  # the one that selected (a small bank stays on the CPU)
        }
    )
    _write_bank(out, arrays, attrs)
    return {
        "bank_size": int(len(order)),
        "train_patches": int(len(kept_rows)),
        "holdout_images": int(len(held)) or int((folds >= 0).sum()),
        "folds": len(fold_rows),
        "device": devices.describe(device),
    }
