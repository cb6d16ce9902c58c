"""A model folder -> one ONNX file holding the whole inspection, and its OpenVINO IR.

The folder is checked as predict checks it (its card and bank must carry one fingerprint), and
the weights loaded now must be the weights it was made with, so a file can only hold a bank
with the features its backbone computes.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from patchcore import errors
from patchcore.backbones import LayerTap, PatchFeatures, build
from patchcore.core.scoring import reweighting
from patchcore.errors import UsageError
from patchcore.export.graph import InspectionGraph
from patchcore.runtime.patchcore_onnx import FORMAT_VERSION  # the runtime refuses a file whose version it does not know
from patchcore.store.model_folder import ModelCard, load_model

FORMATS = ("onnx", "openvino")
BANK_PRECISIONS = ("float32", "float16")
OPSET = 17


def optional(module: str, what: str) -> ModuleType:
    """An export dependency, or one line naming the extra that installs it."""
    return errors.optional(module, what, "export")


def openvino(what: str) -> ModuleType:
    """OpenVINO with its telemetry off: offline line PCs are the export's users.

    ``import openvino`` starts openvino_telemetry (through openvino.tools.ovc), which with no consent
    file in ~/intel takes consent as given, writes a client id there and sends from a thread that
    waits on the network: an export stalled for minutes on a machine without one. ovc declines
    telemetry in CI jobs (its disable_in_ci), so the first import runs as one; the singleton is
    then told no, whatever a later version does at import.
    """
    if "openvino" not in sys.modules:
        saved = os.environ.get("CI")
        os.environ["CI"] = "true"
        try:
            module = optional("openvino", what)
        finally:
            os.environ.pop("CI") if saved is None else os.environ.__setitem__("CI", saved)
    else:
        module = sys.modules["openvino"]
    with contextlib.suppress(
        ImportError, RuntimeError
    ):  # no telemetry package, or never configured: nothing to turn off
        import openvino_telemetry

        openvino_telemetry.Telemetry().consent = False
    return module


def project_version() -> str:
    try:
        return importlib.metadata.version("patchcore-dvc")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def metadata(card: ModelCard, bank_rows: int, bank_precision: str, reweight: int) -> dict[str, object]:
    """What the file says about itself (ONNX metadata_props, each value JSON): enough to prepare images,
    decide verdicts and regions, and to know which data set and weights its numbers come from."""
    b = card.backbone
    return {
        "format_version": FORMAT_VERSION,
        "producer": f"patchcore-dvc {project_version()}",
        "dataset": card.dataset,
        "category": card.category,
        "data": card.data,
        "backbone": b.name,
        "arch": b.arch,
        "weights": card.weights,
        "input_size": b.crop,
        "resize": b.resize,
        "interpolation": b.interpolation,
        "input": "image: uint8 RGB (N, S, S, 3), the network inputs the geometry cuts (see geometry)",
        "geometry": b.geometry.describe(b.crop),
        "threshold": card.threshold,
        "threshold_method": card.threshold_method,
        "pixel_threshold": card.pixel_threshold,
        "score_range": list(card.score_range) if card.score_range is not None else None,
        "heat_scale": card.heat_scale,
        "connectivity": card.connectivity,
        "reweight_neighbours": reweight,
        "blur_sigma": card.blur_sigma,
        "bank_rows": bank_rows,
        "bank_precision": bank_precision,
        "fingerprint": card.fingerprint,
    }


def _graph(model_dir: Path, bank_precision: str) -> tuple[InspectionGraph, ModelCard, dict]:
    card, bank = load_model(model_dir)
    if card.precision != "float32":
        raise UsageError(
            f"{model_dir}: made with extract.precision {card.precision}; export needs a float32 model (set extract.precision: float32 and rerun 'dvc repro')"
        )
    settings = card.backbone
    loaded = build(settings)
    if loaded.weights != card.weights:
        raise UsageError(
            f"{model_dir}: made with weights '{card.weights}' but this machine loads '{loaded.weights}'; use the same weights or rebuild the model"
        )
    if bank_precision == "float16":
        bank = bank.astype(np.float16).astype(np.float32)  # the values the file holds, searched in float32
    b = reweighting(card.reweight_neighbours, len(bank))[0]  # as evaluate: a bank smaller than b turns Eq. 7 off
    features = PatchFeatures(LayerTap(loaded.model, settings.layers), settings, card.aggregation)
    graph = (
        InspectionGraph(features, bank, b, tuple(card.fingerprint["grid"]), card.blur_sigma)
        .eval()
        .requires_grad_(False)
    )
    return graph, card, metadata(card, len(bank), bank_precision, b)


def _half_bank(model, onnx: ModuleType) -> None:
    """Store the bank tiles as float16 with a Cast to float32 in front: half the bank's bytes."""
    from onnx import helper, numpy_helper

    graph = model.graph
    for init in list(graph.initializer):
        if init.name.startswith("bank_") and not init.name.startswith("bank_sq_"):
            values = numpy_helper.to_array(init)
            half = numpy_helper.from_array(values.astype(np.float16), init.name + "_half")
            graph.initializer.remove(init)
            graph.initializer.append(half)
            graph.node.insert(0, helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))


def write_onnx(model_dir: Path, target: Path, bank_precision: str = "float32") -> dict:
    """Export the folder's model into ``target`` (a temporary path); return its metadata."""
    onnx = optional("onnx", "patchcore export")
    graph, card, meta = _graph(model_dir, bank_precision)
    size = card.backbone.crop
    example = torch.zeros(1, size, size, 3, dtype=torch.uint8)
    with torch.no_grad():
        graph(example)  # builds the aggregation kernels now, so the trace records them as constants
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")  # the tracer's notes on shapes it fixes (S is fixed by design)
            torch.onnx.export(
                graph,
                (example,),
                str(target),
                input_names=["image"],
                output_names=["score", "anomaly_map", "patch_max"],
                dynamic_axes={"image": {0: "N"}, "score": {0: "N"}, "anomaly_map": {0: "N"}, "patch_max": {0: "N"}},
                opset_version=OPSET,
                dynamo=False,  # the TorchScript tracer follows the tap's early exit; torch.export cannot
            )
    model = onnx.load(str(target))
    if bank_precision == "float16":
        _half_bank(model, onnx)
    model.doc_string = (
        f"PatchCore inspection of {card.dataset}/{card.category} with {card.backbone.name} ({card.weights})"
    )
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=json.dumps(value, sort_keys=True))
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return meta


def write_openvino(onnx_path: Path, xml_target: Path) -> None:
    """The ONNX file as OpenVINO IR (model.xml + model.bin beside it), weights kept in float32."""
    ov = openvino("patchcore export --format openvino")
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_target), compress_to_fp16=False)
