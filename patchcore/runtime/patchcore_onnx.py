"""Run an exported PatchCore model (model.onnx) with onnxruntime: a module to copy beside your program.

Its only imports besides the standard library are numpy, Pillow and onnxruntime. It prepares
images exactly as the pipeline does (RGB conversion, resize of the shorter side, centre crop:
the uint8 pixels extract saw) and turns the model's outputs into the JSON record that
`patchcore predict` prints: score, normalised score, verdict, and the defect regions in the
original image's pixels.

    from patchcore_onnx import Inspector
    inspector = Inspector("model.onnx")
    for record in inspector.inspect(["part_0001.png"]):
        print(record["score"], record["verdict"])
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

CONNECTIVITY = 8  # regions are 8-connected, as the MVTec AD evaluation code labels defects
MAX_PIXELS = 64_000_000  # larger images are refused as decompression bombs, as the pipeline refuses them
FORMAT_VERSION = 1  # of the metadata patchcore export writes
FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def to_rgb(image: Image.Image) -> Image.Image:
    """The pipeline's RGB conversion: 16/32-bit greyscale scaled by its range, palette and alpha flattened."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() <= 65535 else float(values.max())
        image = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "P":
        image = image.convert("RGBA")
    return image.convert("RGB")


def resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """The shorter side to ``resize``, the longer in proportion (rounded down), as torchvision's Resize(int)."""
    if width <= height:
        return resize, int(resize * height / width)
    return int(resize * width / height), resize


def crop_offsets(width: int, height: int, crop: int) -> tuple[int, int]:
    """Left and top of the centred crop, as torchvision's CenterCrop rounds them."""
    return int(round((width - crop) / 2.0)), int(round((height - crop) / 2.0))


def crop_box(width: int, height: int, resize: int, crop: int) -> tuple[float, float, float, float]:
    """The original image as a box (x0, y0, x1, y1) in the model input's pixels."""
    new_w, new_h = resized_size(width, height, resize)
    left, top = crop_offsets(new_w, new_h, crop)
    return float(-left), float(-top), float(new_w - left), float(new_h - top)


def prepare(image: Image.Image, resize: int, crop: int, interpolation: str = "bilinear") -> np.ndarray:
    """An opened image -> (crop, crop, 3) uint8 RGB, the model's input."""
    rgb = to_rgb(image)
    size = resized_size(rgb.width, rgb.height, resize)
    if size != rgb.size:
        rgb = rgb.resize(size, FILTERS[interpolation])
    left, top = crop_offsets(rgb.width, rgb.height, crop)
    return np.asarray(rgb.crop((left, top, left + crop, top + crop)))


def _taps(n_src: int, start: float, stop: float, n_out: int):
    u = start + (np.arange(n_out, dtype=np.float64) + 0.5) * ((stop - start) / n_out)
    inside = (u >= 0.0) & (u < n_src)
    p = np.clip(u - 0.5, 0.0, n_src - 1)
    low = np.floor(p).astype(np.int64)
    return low, np.minimum(low + 1, n_src - 1), p - low, inside


def to_original(amap: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """The (S, S) map of the crop as a (height, width) map of the original image, bilinearly; 0 outside the crop."""
    height, width = size
    x0, y0, x1, y1 = box
    ylo, yhi, wy, yin = _taps(amap.shape[0], y0, y1, height)
    xlo, xhi, wx, xin = _taps(amap.shape[1], x0, x1, width)
    a = np.asarray(amap, dtype=np.float64)
    rows = a[ylo] * (1.0 - wy)[:, None] + a[yhi] * wy[:, None]
    out = rows[:, xlo] * (1.0 - wx)[None, :] + rows[:, xhi] * wx[None, :]
    out[~yin, :] = 0.0
    out[:, ~xin] = 0.0
    return out.astype(np.float32)


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected labels (1..n, 0 for background) of a boolean mask, numbered in raster order of first pixel."""
    height = mask.shape[0]
    parent: list[int] = []
    runs: list[tuple[int, int, int]] = []  # (row, first column, past the last column)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    above: list[int] = []
    for y in range(height):
        row = np.concatenate(([False], mask[y], [False]))
        edges = np.flatnonzero(row[1:] != row[:-1])
        here = []
        for start, stop in zip(edges[::2].tolist(), edges[1::2].tolist()):
            index = len(runs)
            runs.append((y, start, stop))
            parent.append(index)
            for j in above:  # 8-connected: runs touch when they overlap or meet at a corner
                if runs[j][1] <= stop and start <= runs[j][2]:
                    a, b = root(j), root(index)
                    parent[max(a, b)] = min(a, b)
            here.append(index)
        above = here
    labels = np.zeros(mask.shape, dtype=np.int32)
    numbers: dict[int, int] = {}
    for i, (y, start, stop) in enumerate(runs):
        labels[y, start:stop] = numbers.setdefault(root(i), len(numbers) + 1)
    return labels, len(numbers)


def find_regions(omap: np.ndarray, threshold: float) -> tuple[np.ndarray, list[dict]]:
    """The mask of pixels at or above ``threshold`` and its 8-connected regions, the highest first.

    Each region: x, y (top-left pixel), width, height, area (pixels of the region itself) and max_score, all in
    the original image's pixels.
    """
    mask = omap >= threshold
    labels, n = label_regions(mask)
    if n == 0:
        return mask, []
    ys, xs = np.nonzero(labels)
    index = labels[ys, xs] - 1
    first = np.full((2, n), np.iinfo(np.int64).max)
    last = np.full((2, n), -1)
    peaks = np.full(n, -np.inf, dtype=np.float64)
    for axis, values in enumerate((xs, ys)):
        np.minimum.at(first[axis], index, values)
        np.maximum.at(last[axis], index, values)
    np.maximum.at(peaks, index, omap[ys, xs].astype(np.float64))
    areas = np.bincount(index, minlength=n)
    regions = [
        {
            "x": int(first[0, r]),
            "y": int(first[1, r]),
            "width": int(last[0, r] - first[0, r] + 1),
            "height": int(last[1, r] - first[1, r] + 1),
            "area": int(areas[r]),
            "max_score": round(float(peaks[r]), 6),
        }
        for r in range(n)
    ]
    regions.sort(key=lambda g: (-g["max_score"], g["y"], g["x"]))
    return mask, regions


def verdict(score: float, threshold: float | None) -> str | None:
    """anomalous at or above the threshold, else good; None without a threshold."""
    return None if threshold is None else ("anomalous" if score >= threshold else "good")


class Decision(NamedTuple):
    """One image's decision: ``record`` its JSON fields, ``omap`` its (height, width) float32 anomaly map at the
    original size, ``mask`` its (height, width) bool pixels at or above the pixel threshold (None without one)."""

    record: dict
    omap: np.ndarray
    mask: np.ndarray | None


def decide(score: float, amap: np.ndarray, box: tuple, size: tuple[int, int], threshold, pixel_threshold) -> Decision:
    """One image's decision, the same in evaluate, predict, the service and here: its score and verdict and (with a
    pixel threshold) its regions; its map at the original (height, width) ``size``; its mask (None without)."""
    omap = to_original(amap, box, size)
    entry: dict = {"score": round(float(score), 6), "verdict": verdict(score, threshold)}
    mask = None
    if pixel_threshold is not None:
        mask, entry["regions"] = find_regions(omap, pixel_threshold)
    return Decision(entry, omap, mask)


def record(score: float, amap: np.ndarray, box: tuple, size: tuple[int, int], meta: dict) -> Decision:
    """predict's record of one image of (width, height) ``size``: the decision, its normalised score, the threshold
    and the size; ``meta`` holds threshold, pixel_threshold and score_range. Also its map and mask."""
    width, height = size
    threshold, span = meta["threshold"], meta["score_range"]
    entry, omap, mask = decide(score, amap, box, (height, width), threshold, meta["pixel_threshold"])
    scaled = None if threshold is None or span is None else round(normalised(score, threshold, *span), 6)
    return Decision({**entry, "normalised_score": scaled, "threshold": threshold, "size": [width, height]}, omap, mask)


def normalised(score: float, threshold: float, low: float, high: float) -> float:
    """0.5 at the threshold, min-max scaled by the held-out good images' score range, clamped to [0, 1]."""
    span = max(float(high) - float(low), 1e-12)
    return float(np.clip((float(score) - threshold) / span + 0.5, 0.0, 1.0))


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


def checked_metadata(meta: dict) -> dict:
    """The file's metadata, refused (ValueError naming the key) unless this runtime can act on it: a file travels."""
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"metadata 'format_version' is {meta.get('format_version')!r}; this runtime reads version {FORMAT_VERSION}"
        )
    for key in ("input_size", "resize"):
        if not (isinstance(meta.get(key), int) and 1 <= meta[key] <= 4096):
            raise ValueError(f"metadata {key!r} must be a pixel count in [1, 4096], got {str(meta.get(key))[:40]}")
    for key in ("dataset", "category", "backbone", "weights"):
        if not isinstance(meta.get(key), str):
            raise ValueError(f"metadata {key!r} must be a string (which data set and weights the numbers come from)")
    if meta.get("interpolation") not in FILTERS:
        raise ValueError(f"metadata 'interpolation' must be one of {', '.join(FILTERS)}")
    for key in ("threshold", "pixel_threshold", "score_range", "heat_scale"):
        if key not in meta:
            raise ValueError(f"metadata {key!r} is missing (null where the model has none); export the model again")
    for key in ("threshold", "pixel_threshold"):
        if meta.get(key) is not None and not _positive(meta[key]):
            raise ValueError(f"metadata {key!r} must be a positive number or null")
    span = meta.get("score_range")
    if span is not None and not (
        isinstance(span, list) and len(span) == 2 and all(_positive(v) or v == 0 for v in span) and span[0] <= span[1]
    ):
        raise ValueError("metadata 'score_range' must be [lowest, highest] or null")
    if not _positive(meta.get("heat_scale")):
        raise ValueError("metadata 'heat_scale' must be a positive number")
    return meta


# the bytes of an ONNX TensorProto's external_data entry {key: "location", ...}: weights in another file
_EXTERNAL = b"\x0a\x08location\x12"


def checked_graph(session: object, meta: dict) -> None:
    """The graph against its metadata (ValueError naming the mismatch): one uint8 'image' of (batch, S, S, 3), S the
    metadata's input_size, and the outputs 'score' and 'anomaly_map', as patchcore export writes them."""
    inputs, outputs = session.get_inputs(), {o.name for o in session.get_outputs()}  # type: ignore[attr-defined]
    size, found = meta["input_size"], [(i.name, i.type, list(i.shape)) for i in inputs]
    if (
        len(found) != 1
        or found[0][:2] != ("image", "tensor(uint8)")
        or len(found[0][2]) != 4
        or found[0][2][1:] != [size, size, 3]
    ):
        raise ValueError(
            f"the graph's input is {str(found)[:200]} but its metadata says one uint8 'image' of (batch, {size}, {size}, 3)"
        )
    if not {"score", "anomaly_map"} <= outputs:
        raise ValueError(
            f"the graph's outputs are {sorted(outputs)[:10]}; a patchcore model gives 'score' and 'anomaly_map'"
        )


class Inspector:
    """An exported model and what its metadata says: input size, thresholds, data set and weights."""

    def __init__(self, path: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0):
        import onnxruntime  # here, not at the top: the pipeline imports this module's to_rgb without running a model

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        data = Path(path).read_bytes()
        # from bytes: onnxruntime then opens no other file, so weights "stored beside" the model (external
        # data, whose location could name any file on the machine) cannot load
        try:
            self.session = onnxruntime.InferenceSession(data, options, providers=list(providers))
        except Exception:
            if _EXTERNAL in data:
                raise ValueError(
                    "it keeps tensors in external data files, which this runtime does not read; export the model again"
                ) from None
            raise
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            decoded = {key: json.loads(value) for key, value in meta.items()}
        except ValueError:
            raise ValueError("its metadata values are not JSON; export the model again") from None
        self.meta = checked_metadata(decoded)
        checked_graph(self.session, self.meta)
        self.size, self.resize = int(self.meta["input_size"]), int(self.meta["resize"])
        self.interpolation = str(self.meta["interpolation"])

    def prepare(self, image: Image.Image) -> np.ndarray:
        return prepare(image, self.resize, self.size, self.interpolation)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 -> scores (N,), anomaly maps (N, S, S)."""
        score, amap = self.session.run(["score", "anomaly_map"], {"image": np.ascontiguousarray(batch, dtype=np.uint8)})
        return score, amap

    def decide(self, score: float, amap: np.ndarray, size: tuple[int, int]) -> Decision:
        """One image's record (predict's fields), its map at the original (width, height) ``size`` and its mask."""
        box = crop_box(size[0], size[1], self.resize, self.size)
        return record(score, amap, box, size, self.meta)

    def inspect(self, paths: Iterable[str | Path], batch: int = 8) -> Iterable[dict]:
        """One record per image file, ``batch`` images per run of the model."""
        paths = list(paths)
        for first in range(0, len(paths), batch):
            group, sizes = [], []
            for path in paths[first : first + batch]:
                with warnings.catch_warnings():  # Pillow's DecompressionBombWarning: refused below, in one line
                    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")
                    opened = Image.open(path)
                with opened as image:
                    if image.width * image.height > MAX_PIXELS:
                        raise ValueError(
                            f"{path}: {image.width} x {image.height} pixels is beyond the {MAX_PIXELS} pixel limit"
                        )
                    sizes.append(image.size)
                    group.append(self.prepare(image))
            scores, maps = self.run(np.stack(group))
            for path, size, score, amap in zip(paths[first : first + batch], sizes, scores, maps):
                yield {"image": str(path), **self.decide(float(score), amap, size)[0]}
