"""Does an exported file give evaluate's numbers? Its scores on the test images against scores.csv.

The images are prepared by the copyable runtime (runtime/patchcore_onnx.py), not by the
pipeline's transforms, so the check covers the path a line PC runs: Pillow, the file, onnxruntime.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from patchcore.datasets.images import readable
from patchcore.errors import UsageError
from patchcore.export.onnx_file import openvino
from patchcore.runtime.patchcore_onnx import Inspector, image_scores


def _score_and_max(outputs) -> tuple[np.ndarray, np.ndarray]:
    """OpenVINO's results in the graph's output order: score, anomaly_map, patch_max."""
    return outputs[0], outputs[2]


ONNXRUNTIME_TOLERANCE = 1e-4  # largest relative score error (the contract)
OPENVINO_TOLERANCE = 1e-3
FLOAT16_TOLERANCE = 1e-2  # a float16 bank rounds every bank value by up to 2^-11 of itself
BATCH = 8


def expected_scores(scores_csv: Path) -> tuple[list[str], np.ndarray]:
    """evaluate's scores.csv: image paths (relative, inside the data set) and finite scores, or one line saying what is
    wrong."""
    what = f"--check {scores_csv}: not a scores.csv written by evaluate"
    try:
        with open(scores_csv, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise UsageError(
            f"--check {scores_csv}: not found; name plots/<dataset>/<backbone>/<category>/scores.csv (dvc repro writes it)"
        ) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{what} ({exc.__class__.__name__}); rerun 'dvc repro' to rewrite it") from None
    if not rows or not {"image", "score"} <= set(rows[0]):
        raise UsageError(
            f"{what} (it needs the columns image and score, one row per test image); name evaluate's own file"
        )
    names, values = [], []
    for number, row in enumerate(rows, start=2):
        name = row["image"] or ""
        try:
            value = float(row["score"] or "")
        except ValueError:
            value = float("nan")
        if not np.isfinite(value) or not name or name.startswith(("/", "\\")) or ".." in Path(name).parts:
            raise UsageError(
                f"{what}: line {number} needs a relative image path and a finite score; rerun 'dvc repro' to rewrite it"
            )
        names.append(name)
        values.append(value)
    return names, np.array(values)


def _batches(images: list[Path], inspector: Inspector):
    """(inputs of BATCH images, each image's count of inputs)."""
    for first in range(0, len(images), BATCH):
        group = []
        for path in images[first : first + BATCH]:
            with readable(path), Image.open(path) as image:
                group.append(inspector.inputs(image)[0])
        yield np.concatenate(group), [len(g) for g in group]


def compare(
    name: str, scores: np.ndarray, expected: np.ndarray, images: list[str], threshold: float | None, tolerance: float
) -> dict:
    """One runtime's record; an image within ``tolerance`` of the threshold is listed, its verdict not held against the
    file."""
    relative = np.abs(scores.astype(np.float64) - expected) / np.maximum(np.abs(expected), 1e-12)
    near, flipped = [], []
    if threshold is not None:
        for image, got, want in zip(images, scores, expected):
            if abs(want - threshold) <= tolerance * threshold:
                near.append(image)
            elif (got >= threshold) != (want >= threshold):
                flipped.append(image)
    return {
        "runtime": name,
        "max_relative_score_error": float(relative.max()),
        "tolerance": tolerance,
        "verdicts_differ": flipped,
        "near_threshold": near,
        "passed": bool(relative.max() <= tolerance and not flipped),
    }


def check(
    onnx_path: Path,
    xml_path: Path | None,
    data_root: Path,
    scores_csv: Path,
    bank_precision: str,
    label: Path,
    read: tuple | None = None,
) -> dict:
    """Run the file (and its IR) on the images of scores.csv; raise UsageError unless every runtime passes.
    ``read``: expected_scores(scores_csv), when the caller has it already."""
    names, expected = read or expected_scores(scores_csv)
    images = [data_root / n for n in names]
    inspector = Inspector(onnx_path)
    threshold = inspector.meta["threshold"]
    batches = list(_batches(images, inspector))
    scores = np.concatenate([inspector.score(b, counts)[0] for b, counts in batches])
    ort_tolerance = FLOAT16_TOLERANCE if bank_precision == "float16" else ONNXRUNTIME_TOLERANCE
    records = [compare("onnxruntime (CPU)", scores, expected, names, threshold, ort_tolerance)]
    if xml_path is not None:
        ov = openvino("the OpenVINO parity check")
        compiled = ov.Core().compile_model(str(xml_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        ov_scores = np.concatenate([image_scores(*_score_and_max(compiled(b)), counts) for b, counts in batches])
        records.append(
            compare("OpenVINO (CPU)", ov_scores, expected, names, threshold, max(OPENVINO_TOLERANCE, ort_tolerance))
        )
    for r in records:
        if not r["passed"]:
            raise UsageError(
                f"{label}: {r['runtime']} does not give evaluate's scores ({scores_csv}): relative error up to "
                f"{r['max_relative_score_error']:.2e} (tolerance {r['tolerance']:.0e}), verdicts differ on {len(r['verdicts_differ'])} image(s); "
                "nothing was written; please report this with the model folder"
            )
    return {"images": len(names), "scores": str(scores_csv), "runtimes": records}


def stable(checked: dict) -> dict:
    """The record as git keeps it: whether each runtime is within its tolerance, not the error itself, whose
    last digits follow the CPU's kernels and thread count (1.5e-6 on one x86, 1.8e-6 on another)."""
    runtimes = [{k: v for k, v in r.items() if k != "max_relative_score_error"} for r in checked["runtimes"]]
    return {**checked, "runtimes": runtimes}


def summary(checked: dict) -> str:
    """What the check measured, for the terminal: each runtime's largest relative score error against its tolerance."""
    each = [
        f"{r['runtime']}: largest relative error {r['max_relative_score_error']:.2e}, tolerance {r['tolerance']:.0e}"
        for r in checked["runtimes"]
    ]
    return f"gives evaluate's scores on {checked['images']} test images ({'; '.join(each)})"
