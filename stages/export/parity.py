"""Does an exported file give evaluate's numbers? Its scores on the test images against scores.csv.

The images are prepared by the copyable runtime (runtime/patchcore_onnx.py), not by the
pipeline's transforms, so the check covers the path a line PC runs: Pillow, the file, onnxruntime.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from ..datasets.images import readable
from ..errors import UsageError
from ..runtime.patchcore_onnx import Inspector
from .onnx_file import optional

ONNXRUNTIME_TOLERANCE = 1e-4  # largest relative score error (the contract)
OPENVINO_TOLERANCE = 1e-3
FLOAT16_TOLERANCE = 1e-2  # a float16 bank rounds every bank value by up to 2^-11 of itself
BATCH = 8


def expected_scores(scores_csv: Path) -> tuple[list[str], np.ndarray]:
    with readable(scores_csv, "rerun 'dvc repro' to rewrite it"), open(scores_csv, newline="") as f:
        rows = list(csv.DictReader(f))
        return [r["image"] for r in rows], np.array([float(r["score"]) for r in rows])


def _batches(images: list[Path], inspector: Inspector):
    for first in range(0, len(images), BATCH):
        group = []
        for path in images[first : first + BATCH]:
            with readable(path), Image.open(path) as image:
                group.append(inspector.prepare(image))
        yield np.stack(group)


def compare(name: str, scores: np.ndarray, expected: np.ndarray, images: list[str], threshold: float | None, tolerance: float) -> dict:
    """One runtime's record; an image within ``tolerance`` of the threshold is listed, its verdict not held against the file."""
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


def check(onnx_path: Path, xml_path: Path | None, data_root: Path, scores_csv: Path, bank_precision: str, label: Path) -> dict:
    """Run the file (and its IR) on the images of scores.csv; raise UsageError unless every runtime passes."""
    names, expected = expected_scores(scores_csv)
    images = [data_root / n for n in names]
    inspector = Inspector(onnx_path)
    threshold = inspector.meta["threshold"]
    batches = list(_batches(images, inspector))
    scores = np.concatenate([inspector.run(b)[0] for b in batches])
    ort_tolerance = FLOAT16_TOLERANCE if bank_precision == "float16" else ONNXRUNTIME_TOLERANCE
    records = [compare("onnxruntime (CPU)", scores, expected, names, threshold, ort_tolerance)]
    if xml_path is not None:
        ov = optional("openvino", "the OpenVINO parity check")
        compiled = ov.Core().compile_model(str(xml_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        ov_scores = np.concatenate([compiled(b)[0] for b in batches])
        records.append(compare("OpenVINO (CPU)", ov_scores, expected, names, threshold, max(OPENVINO_TOLERANCE, ort_tolerance)))
    for r in records:
        if not r["passed"]:
            raise UsageError(
                f"{label}: {r['runtime']} does not give evaluate's scores ({scores_csv}): relative error up to "
                f"{r['max_relative_score_error']:.2e} (tolerance {r['tolerance']:.0e}), verdicts differ on {len(r['verdicts_differ'])} image(s); "
                "nothing was written; please report this with the model folder"
            )
    return {"images": len(names), "scores": str(scores_csv), "runtimes": records}
