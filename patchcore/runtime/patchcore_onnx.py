"""Run an exported PatchCore model (model.onnx) with onnxruntime: a module to copy beside your program.

Its only imports besides the standard library are numpy, Pillow and onnxruntime. It prepares
images exactly as the pipeline does (RGB conversion, then the model's geometry: a resize and
centre crop, the whole image in one padded input, or overlapping tiles; the uint8 pixels
extract saw) and turns the model's outputs into the JSON record that `patchcore predict`
prints: score, normalised score, verdict, and the defect regions in the original image's
pixels, the tiles' maps stitched back at the image's own size.

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
from typing import NamedTuple, TypeAlias

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
    return views(width, height, {}, resize, crop)[0].box()


GEOMETRIES = ("resize_crop", "whole", "tiles")
Boxes: TypeAlias = np.ndarray | Sequence[tuple[float, float, float, float]]  # (k, 4): the image in each input's pixels
MAX_VIEWS = 4096  # tiles of one image: 20 MP at scale 1 with 224 px tiles and a quarter overlap is about 700


class View(NamedTuple):
    """One network input of an image: the image resized to (width, height), and the square window of the input's
    side at (left, top) of it; a window past the resized image's edge is padded with black."""

    width: int
    height: int
    left: int
    top: int

    def box(self) -> tuple[float, float, float, float]:
        """The original image as a box (x0, y0, x1, y1) in this input's pixels."""
        return float(-self.left), float(-self.top), float(self.width - self.left), float(self.height - self.top)


def tile_starts(length: int, side: int, overlap: int) -> list[int]:
    """Window starts along an axis of ``length`` pixels: the fewest windows of ``side`` that overlap by at least
    ``overlap`` and cover every pixel, spread evenly from edge to edge (the last ends at the border)."""
    if length <= side:
        return [0]
    n = -(-(length - overlap) // (side - overlap))
    return [(i * (length - side) + (n - 1) // 2) // (n - 1) for i in range(n)]


def views(width: int, height: int, geometry: dict, resize: int, crop: int) -> list[View]:
    """The network inputs of a (width, height) image, in raster order.

    resize_crop: the shorter side to ``resize``, the centred ``crop`` window (one input; the rest is dropped).
    whole: the longer side to ``crop``, the shorter in proportion, centred in the window (one input, padded).
    tiles: the image at ``scale`` (raised until the shorter side fills one tile), cut into ``crop`` windows that
    overlap by ``overlap`` pixels or more and cover every pixel.
    """
    name = geometry.get("name", "resize_crop")
    if name == "resize_crop":
        w, h = resized_size(width, height, resize)
        return [View(w, h, *crop_offsets(w, h, crop))]
    if name == "whole":
        long = max(width, height)
        w, h = max(1, (width * crop + long // 2) // long), max(1, (height * crop + long // 2) // long)
        return [View(w, h, -((crop - w) // 2), -((crop - h) // 2))]
    scale = float(geometry["scale"])
    w, h = int(width * scale + 0.5), int(height * scale + 0.5)
    if min(w, h) < crop:  # smaller than one tile: enlarged until it fills one, never padded
        w, h = resized_size(width, height, crop)
    overlap = int(geometry["overlap"])
    return [View(w, h, x, y) for y in tile_starts(h, crop, overlap) for x in tile_starts(w, crop, overlap)]


def view_pixels(image: Image.Image, inputs: Sequence[View], crop: int, interpolation: str = "bilinear") -> np.ndarray:
    """An opened image -> (views, crop, crop, 3) uint8 RGB, the model's inputs (all views share one resize)."""
    rgb = to_rgb(image)
    size = (inputs[0].width, inputs[0].height)
    if size != rgb.size:
        rgb = rgb.resize(size, FILTERS[interpolation])
    return np.stack([np.asarray(rgb.crop((v.left, v.top, v.left + crop, v.top + crop))) for v in inputs])


def prepare(image: Image.Image, resize: int, crop: int, interpolation: str = "bilinear") -> np.ndarray:
    """An opened image -> (crop, crop, 3) uint8 RGB, the model's input (resize and centre crop)."""
    return view_pixels(image, views(image.width, image.height, {}, resize, crop), crop, interpolation)[0]


def _taps(n_src: int, start: float, stop: float, n_out: int):
    u = start + (np.arange(n_out, dtype=np.float64) + 0.5) * ((stop - start) / n_out)
    inside = (u >= 0.0) & (u < n_src)
    p = np.clip(u - 0.5, 0.0, n_src - 1)
    low = np.floor(p).astype(np.int64)
    return low, np.minimum(low + 1, n_src - 1), p - low, inside, u


def to_original(amap: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """The (S, S) map of the crop as a (height, width) map of the original image, bilinearly; 0 outside the crop."""
    height, width = size
    x0, y0, x1, y1 = box
    ylo, yhi, wy, yin, _ = _taps(amap.shape[0], y0, y1, height)
    xlo, xhi, wx, xin, _ = _taps(amap.shape[1], x0, x1, width)
    a = np.asarray(amap, dtype=np.float64)
    rows = a[ylo] * (1.0 - wy)[:, None] + a[yhi] * wy[:, None]
    out = rows[:, xlo] * (1.0 - wx)[None, :] + rows[:, xhi] * wx[None, :]
    out[~yin, :] = 0.0
    out[:, ~xin] = 0.0
    return out.astype(np.float32)


def _feather(n_src: int, box_start: float, box_stop: float, n_out: int):
    """Along one axis: the covered output span, its bilinear taps and each pixel's weight, its distance to the
    window's nearer edge (in input pixels): tiles hand over smoothly, and the edge patches, whose context is
    padding, count least."""
    low, high, w, inside, u = _taps(n_src, box_start, box_stop, n_out)
    at = np.flatnonzero(inside)
    span = slice(int(at[0]), int(at[-1]) + 1)
    return span, low[span], high[span], w[span], np.maximum(np.minimum(u[span], n_src - u[span]), 1e-3)


def stitch(maps: np.ndarray, boxes: Boxes, size: tuple[int, int]) -> np.ndarray:
    """Views' (k, S, S) maps as one (height, width) map of the original image: one view as ``to_original``; where
    views overlap, their values averaged with weights that fall to 0 at each window's edge (no seams)."""
    if len(maps) == 1:
        return to_original(maps[0], boxes[0], size)
    total, weight = np.zeros(size, dtype=np.float64), np.zeros(size, dtype=np.float64)
    for amap, (x0, y0, x1, y1) in zip(maps, boxes):
        ys, ylo, yhi, wy, fy = _feather(amap.shape[0], y0, y1, size[0])
        xs, xlo, xhi, wx, fx = _feather(amap.shape[1], x0, x1, size[1])
        a = np.asarray(amap, dtype=np.float64)
        rows = a[ylo] * (1.0 - wy)[:, None] + a[yhi] * wy[:, None]
        values = rows[:, xlo] * (1.0 - wx)[None, :] + rows[:, xhi] * wx[None, :]
        feather = fy[:, None] * fx[None, :]
        total[ys, xs] += values * feather
        weight[ys, xs] += feather
    return np.divide(total, weight, out=np.zeros(size), where=weight > 0).astype(np.float32)


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


def decide(score: float, maps: np.ndarray, boxes: Boxes, size: tuple[int, int], threshold, pixel_threshold) -> Decision:
    """One image's decision, the same in evaluate, predict, the service and here: its score and verdict and (with a
    pixel threshold) its regions; its views' (k, S, S) ``maps`` (with their ``boxes``) stitched at the original
    (height, width) ``size``; its mask (None without)."""
    omap = stitch(maps, boxes, size)
    entry: dict = {"score": round(float(score), 6), "verdict": verdict(score, threshold)}
    mask = None
    if pixel_threshold is not None:
        mask, entry["regions"] = find_regions(omap, pixel_threshold)
    return Decision(entry, omap, mask)


def record(score: float, maps: np.ndarray, boxes: Boxes, size: tuple[int, int], meta: dict) -> Decision:
    """predict's record of one image of (width, height) ``size``: the decision, its normalised score, the threshold
    and the size; ``meta`` holds threshold, pixel_threshold and score_range. Also its map and mask."""
    width, height = size
    threshold, span = meta["threshold"], meta["score_range"]
    entry, omap, mask = decide(score, maps, boxes, (height, width), threshold, meta["pixel_threshold"])
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
    _check_geometry(geometry_of(meta), meta["input_size"])
    return meta


def geometry_of(meta: dict) -> dict:
    """The geometry a file's metadata names; files written before tiles name none: resize_crop."""
    return meta.get("geometry", {"name": "resize_crop"})


def _check_geometry(geometry: object, size: int) -> None:
    """The metadata's geometry (absent before tiles: resize_crop), refused unless views() can act on it."""
    if not isinstance(geometry, dict) or geometry.get("name") not in GEOMETRIES:
        raise ValueError(f"metadata 'geometry' must name one of {', '.join(GEOMETRIES)}")
    if geometry["name"] == "tiles":
        scale, overlap = geometry.get("scale"), geometry.get("overlap")
        scaled = _positive(scale) and float(scale) <= 4  # type: ignore[arg-type]
        if not (scaled and isinstance(overlap, int) and not isinstance(overlap, bool) and 0 <= overlap <= size // 2):
            raise ValueError("metadata 'geometry' of tiles needs a 'scale' in (0, 4] and an 'overlap' in [0, S/2]")


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
    if geometry_of(meta)["name"] == "tiles" and "patch_max" not in outputs:
        raise ValueError("the graph has no output 'patch_max', which tiles need to pick each image's highest patch")


def image_scores(scores: np.ndarray, patch_max: np.ndarray | None, counts: Sequence[int]) -> np.ndarray:
    """Per-input scores -> per-image scores, an image being ``counts`` consecutive inputs: the score of the input
    that holds the image's highest patch (its first on a tie), as evaluate scores a tiled image (Eq. 7 on its m*)."""
    if all(c == 1 for c in counts):
        return np.asarray(scores)
    if patch_max is None:
        raise ValueError("an image of several inputs needs each input's highest patch score (patch_max)")
    ends = np.cumsum(counts)
    picks = [int(end - count + np.argmax(patch_max[end - count : end])) for end, count in zip(ends, counts)]
    return np.asarray(scores)[picks]


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

    def inputs(self, image: Image.Image) -> tuple[np.ndarray, list]:
        """An opened image -> its (k, S, S, 3) uint8 network inputs and their boxes (the file's geometry)."""
        cut = views(image.width, image.height, geometry_of(self.meta), self.resize, self.size)
        if len(cut) > MAX_VIEWS:
            raise ValueError(f"{image.width} x {image.height} pixels makes {len(cut)} tiles, more than {MAX_VIEWS}")
        return view_pixels(image, cut, self.size, self.interpolation), [v.box() for v in cut]

    def prepare(self, image: Image.Image) -> np.ndarray:
        """An opened image -> its first network input (S, S, 3): its only one unless the file's geometry is tiles."""
        return self.inputs(image)[0][0]

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 -> scores (N,), anomaly maps (N, S, S), one per input."""
        score, amap = self.session.run(["score", "anomaly_map"], {"image": np.ascontiguousarray(batch, dtype=np.uint8)})
        return score, amap

    def score(self, batch: np.ndarray, counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The inputs of images of ``counts`` inputs each, (V, S, S, 3) uint8 -> image scores (n,), maps (V, S, S)."""
        names = ["score", "anomaly_map"] + (["patch_max"] if any(c > 1 for c in counts) else [])
        out = self.session.run(names, {"image": np.ascontiguousarray(batch, dtype=np.uint8)})
        return image_scores(out[0], out[2] if len(out) > 2 else None, counts), out[1]

    def decide(self, score: float, maps: np.ndarray, boxes: Boxes, size: tuple[int, int]) -> Decision:
        """One image's record (predict's fields), its inputs' maps stitched at the original (width, height) ``size``,
        and its mask."""
        return record(score, maps, boxes, size, self.meta)

    def inspect(self, paths: Iterable[str | Path], batch: int = 8) -> Iterable[dict]:
        """One record per image file, the inputs of ``batch`` images per run of the model."""
        paths = list(paths)
        for first in range(0, len(paths), batch):
            group, sizes, boxes = [], [], []
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
                    pixels, box = self.inputs(image)
                    group.append(pixels)
                    boxes.append(box)
            scores, maps = self.score(np.concatenate(group), [len(b) for b in boxes])
            at = 0
            for path, size, score, box in zip(paths[first : first + batch], sizes, scores, boxes):
                decision = self.decide(float(score), maps[at : at + len(box)], box, size)
                at += len(box)
                yield {"image": str(path), **decision.record}
