"""The measurements of bench/gpu.py beside the stages: bare forward, coreset crossover, precisions."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from patchcore import backbones as bb
from patchcore.backbones.stream import grouped, loader
from patchcore.config import AggregationSettings
from patchcore.core import devices, torch_kcenter
from patchcore.core.sampling import coreset_size, greedy_kcenter, project, projection_matrix, start_index
from patchcore.datasets.images import normalised
from patchcore.datasets.layout import list_split


def _batches(root: Path, settings, extract, limit: int | None = None) -> list[torch.Tensor]:
    """The category's images decoded and resized as extract does, in extract's batches, in memory."""
    samples = list_split(root, "train") + list_split(root, "test")
    samples = samples[:limit] if limit else samples
    images = loader([root / s.path for s in samples], settings, extract.num_workers)
    return [normalised(pixels, settings) for pixels, _ in grouped(images, extract.batch_size, pin=False)]


def _network(settings, extract, device: torch.device):
    loaded = bb.build(settings)
    bb.place(loaded.model, device, extract.channels_last)
    return bb.LayerTap(
        loaded.model, settings.layers
    ), torch.channels_last if extract.channels_last else torch.contiguous_format


def _rate(call, batches: list[torch.Tensor], device: torch.device, rounds: int = 3) -> float:
    """Median images/s of ``call`` over all batches (one warm-up batch first)."""
    with torch.inference_mode():
        call(batches[0])
        devices.synchronize(device)
        rates = []
        for _ in range(rounds):
            started = time.perf_counter()
            for batch in batches:
                call(batch)
            devices.synchronize(device)
            rates.append(sum(len(b) for b in batches) / (time.perf_counter() - started))
    return statistics.median(rates)


def decode_rate(root: Path, settings, extract) -> float:
    """Images/s of decoding and resizing alone, by extract's DataLoader (one image per worker task)."""
    samples = list_split(root, "train") + list_split(root, "test")
    started = time.perf_counter()
    n = sum(1 for _ in loader([root / s.path for s in samples], settings, extract.num_workers))
    return round(n / (time.perf_counter() - started), 1)


def bare_forward_rate(root: Path, settings, extract, device: torch.device) -> float:
    """Images/s of the network alone (to the tapped layers), on extract's batches already on the device."""
    tap, fmt = _network(settings, extract, device)
    batches = [b.to(device).contiguous(memory_format=fmt) for b in _batches(root, settings, extract)]
    features = bb.PatchFeatures(tap, settings, AggregationSettings(), extract.precision)
    return round(_rate(features.maps, batches, device), 1)


def feature_error(root: Path, settings, extract, device: torch.device) -> dict:
    """Per precision: images/s of forward + aggregation, and the patch features' mean relative error vs float32."""
    tap, fmt = _network(settings, extract, device)
    batches = [
        b.to(device).contiguous(memory_format=fmt)
        for b in _batches(root, settings, extract, limit=4 * extract.batch_size)
    ]
    out, reference = {}, None
    print("| precision | forward + aggregation images/s | mean relative feature error vs float32 |")
    print("|---|---|---|")
    for precision in ("float32", "bfloat16", "float16"):
        features = bb.PatchFeatures(tap, settings, AggregationSettings(), precision)
        rate = _rate(features, batches, device)
        with torch.inference_mode():
            got = torch.cat([features(b).cpu() for b in batches])
        reference = got if reference is None else reference
        error = float(((got - reference).norm(dim=-1) / reference.norm(dim=-1).clamp_min(1e-12)).mean())
        out[precision] = {"images_per_s": round(rate, 1), "relative_error": round(error, 5)}
        print(f"| {precision} | {rate:.1f} | {error:.5f} |")
    return out


def crossover(train_h5: Path, sizes: list[int], device: torch.device) -> list[dict]:
    """Coreset (10%) of the first N training patches: CPU lazy selection vs the device loop."""
    with h5py.File(train_h5) as f:
        patches = f["patches"][()]
    greedy_kcenter(
        np.random.default_rng(0).standard_normal((64, 128)).astype(np.float32), 8, 0, progress=False
    )  # numba compiles once
    rows = []
    print(
        f"| patches N x D | picks | CPU lazy s | {device.type} loop s | CPU / {device.type} | same picks in order (share) | same bank |"
    )
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        n = len(patches) if size == 0 or size > len(patches) else size
        points, matrix = patches[:n], projection_matrix(patches.shape[1], 128, 0)
        n_pick, start = coreset_size(n, 0.1), start_index(n, 0)
        began = time.perf_counter()
        on_cpu = greedy_kcenter(project([points], matrix), n_pick, start, progress=False)
        cpu_s = time.perf_counter() - began
        began = time.perf_counter()
        on_device = torch_kcenter.greedy_kcenter(torch_kcenter.project([points], matrix, device), n_pick, start, device)
        devices.synchronize(device)
        device_s = time.perf_counter() - began
        same = bool(np.array_equal(on_cpu, on_device))
        same_bank = bool(np.array_equal(np.sort(on_cpu), np.sort(on_device)))  # the bank is the sorted picks
        agree = float(np.mean(on_cpu == on_device))
        rows.append(
            {
                "n": n,
                "picks": n_pick,
                "cpu_s": round(cpu_s, 3),
                "device_s": round(device_s, 3),
                "same_picks": same,
                "same_bank": same_bank,
                "share_equal": agree,
            }
        )
        print(
            f"| {n} x {patches.shape[1]} | {n_pick} | {cpu_s:.2f} | {device_s:.2f} | {cpu_s / device_s:.1f}x | {same} ({agree:.4f}) | {same_bank} |"
        )
    return rows


def aggregation_profile(settings, extract, device: torch.device, rounds: int = 5) -> dict:
    """Seconds per image of the patch aggregation alone (WRN50-shaped maps, extract's batch), with the
    GPU's channels-last resize and without it, and the largest difference between the two results."""
    from patchcore.core import features as core_features

    b = extract.batch_size
    generator = torch.Generator().manual_seed(0)
    maps = [
        torch.randn(b, 512, 28, 28, generator=generator).to(device),
        torch.randn(b, 1024, 14, 14, generator=generator).to(device),
    ]
    out, results = {}, {}
    for nhwc in (True, False):
        core_features.GPU_RESIZE_CHANNELS_LAST = nhwc

        def run(_):
            return core_features.aggregate(maps, settings.target_dim)

        out[f"channels_last_resize_{nhwc}_images_per_s"] = round(_rate(run, [maps[0]] * rounds, device, rounds=1), 1)
        with torch.inference_mode():
            results[nhwc] = run(None).cpu()
    core_features.GPU_RESIZE_CHANNELS_LAST = True
    out["max_abs_difference"] = float((results[True] - results[False]).abs().max())
    print(f"aggregation alone: {out}")
    return out
