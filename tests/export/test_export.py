"""patchcore export: the file gives evaluate's numbers in onnxruntime and OpenVINO, and refuses what it must."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from patchcore.datasets.images import load_rgb, network_view
from patchcore.engines.predict_worker import PredictWorker
from patchcore.runtime.patchcore_onnx import Inspector
from patchcore.store.model_folder import load_model

from helpers import assert_usage_error, files_under, lite0_model, run_cli

MODEL = "features/sample/hazelnut_toy/efficientnet_lite0"
SCORES = "plots/sample/efficientnet_lite0/hazelnut_toy/scores.csv"


@pytest.fixture(scope="module")
def exported(sample_root, tmp_path_factory):
    """A Lite0 model with label-free thresholds, exported with its OpenVINO IR and checked against scores.csv."""
    project = lite0_model(
        sample_root,
        tmp_path_factory.mktemp("export"),
        (10, 3, 5),
        **{"coreset.ratio": 0.25, "coreset.holdout_fraction": 0.2, "coreset.holdout_folds": 0},
    )
    result = run_cli(
        "export",
        MODEL,
        "--out",
        "models/lite0",
        "--format",
        "openvino",
        "--check",
        SCORES,
        "--record",
        "export.json",
        cwd=project,
    )
    assert result.returncode == 0, result.stderr
    (project / "export.out").write_text(result.stdout)
    return project


def largest_errors(stdout: str) -> dict[str, float]:
    """Each runtime's largest relative score error as the export prints it (the record holds only pass/fail)."""
    return {
        name: float(value)
        for name, value in re.findall(r"([A-Za-z]+ \(CPU\)): largest relative error ([0-9.e+-]+)", stdout)
    }


def _test_images(project):
    with open(project / SCORES, newline="") as f:
        return [project / "data/sample/hazelnut_toy" / row["image"] for row in csv.DictReader(f)]


def test_the_file_gives_evaluates_scores_in_onnxruntime_and_openvino(exported):
    record = json.loads((exported / "export.json").read_text())
    runtimes = {r["runtime"]: r for r in record["parity"]["runtimes"]}
    card = json.loads((exported / MODEL / "model.json").read_text())
    assert record["parity"]["images"] == 8 and record["weights"] == card["weights"] and record["dataset"] == "sample"
    errors = largest_errors((exported / "export.out").read_text())
    assert (
        errors["onnxruntime (CPU)"] <= 1e-4
        and runtimes["onnxruntime (CPU)"]["passed"]
        and not runtimes["onnxruntime (CPU)"]["verdicts_differ"]
    )
    assert (
        errors["OpenVINO (CPU)"] <= 1e-3
        and runtimes["OpenVINO (CPU)"]["passed"]
        and not runtimes["OpenVINO (CPU)"]["verdicts_differ"]
    )
    assert all("max_relative_score_error" not in r for r in runtimes.values())  # the CPU's last digits stay out of git
    assert files_under(exported / "models/lite0") == ["model.bin", "model.onnx", "model.xml"]


def test_the_file_carries_its_thresholds_fingerprint_and_provenance(exported):
    model = onnx.load(str(exported / "models/lite0/model.onnx"))
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    card = json.loads((exported / MODEL / "model.json").read_text())
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    for key in ("threshold", "pixel_threshold", "fingerprint", "dataset", "category", "weights", "heat_scale"):
        assert meta[key] == card[key], key
    assert (
        meta["score_range"] == card["score_range"]
        and meta["input_size"] == card["backbone"]["crop"]
        and meta["producer"].startswith("patchcore-dvc ")
    )
    (image,) = model.graph.input
    shape = [d.dim_value or d.dim_param for d in image.type.tensor_type.shape.dim]
    assert (
        image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
        and shape[1:] == [224, 224, 3]
        and isinstance(shape[0], str)
    )
    assert [o.name for o in model.graph.output] == ["score", "anomaly_map", "patch_max"]
    assert meta["geometry"] == {"name": "resize_crop"}


def test_maps_are_predicts_maps(exported):
    """The torch predict path and the file on the same images: maps within 1e-3 of the map's range."""
    card, bank = load_model(exported / MODEL)
    images = _test_images(exported)[:4]
    worker = PredictWorker(
        card.backbone,
        card.aggregation,
        "float32",
        card.channels_last,
        bank,
        card.approximate_above,
        "cpu",
        torch.get_num_threads(),
    )
    scores, maps = worker.predict(
        torch.from_numpy(np.stack([np.asarray(network_view(card.backbone)(load_rgb(p))) for p in images])),
        None,
        card.reweight_neighbours,
        224,
        card.blur_sigma,
    )
    inspector = Inspector(exported / "models/lite0/model.onnx")
    got_scores, got_maps = inspector.run(np.stack([inspector.prepare(Image.open(p)) for p in images]))
    np.testing.assert_allclose(got_scores, scores, rtol=1e-4)
    assert np.abs(got_maps - maps).max() <= 1e-3 * float(np.ptp(maps))


def test_predict_runtime_onnx_writes_predicts_records(exported, tmp_path):
    folder = exported / "data/sample/hazelnut_toy/test"
    runs = {}
    for runtime, model in (("torch", MODEL), ("onnx", "models/lite0/model.onnx")):
        result = run_cli(
            "predict", model, str(folder), "--runtime", runtime, "--out", str(tmp_path / runtime), cwd=exported
        )
        assert result.returncode == 0, result.stderr
        runs[runtime] = [json.loads(x) for x in (tmp_path / runtime / "predictions.jsonl").read_text().splitlines()]
    assert len(runs["torch"]) == len(runs["onnx"]) == 8
    for a, b in zip(runs["torch"], runs["onnx"]):
        assert a["image"] == b["image"] and a["verdict"] == b["verdict"] and a["size"] == b["size"]
        assert b["score"] == pytest.approx(a["score"], rel=1e-4) and b["normalised_score"] == pytest.approx(
            a["normalised_score"], abs=1e-4
        )
        assert len(b["regions"]) == len(a["regions"]) and [r["area"] for r in b["regions"]] == pytest.approx(
            [r["area"] for r in a["regions"]], rel=0.02
        )
        assert (tmp_path / "onnx/heatmaps" / b["heatmap"].split("/")[-1]).is_file() and (
            tmp_path / "onnx/masks" / b["mask"].split("/")[-1]
        ).is_file()


def test_a_float16_bank_is_smaller_and_close(exported):
    result = run_cli(
        "export",
        MODEL,
        "--out",
        "models/half",
        "--bank-precision",
        "float16",
        "--check",
        SCORES,
        "--record",
        "half.json",
        cwd=exported,
    )
    assert result.returncode == 0, result.stderr
    half, full = (
        (exported / "models/half/model.onnx").stat().st_size,
        (exported / "models/lite0/model.onnx").stat().st_size,
    )
    bank_bytes = load_model(exported / MODEL)[1].nbytes
    assert full - half == pytest.approx(bank_bytes / 2, rel=0.05)
    (r,) = json.loads((exported / "half.json").read_text())["parity"]["runtimes"]
    assert r["passed"] and r["tolerance"] == 1e-2 and 0 < largest_errors(result.stdout)["onnxruntime (CPU)"] <= 1e-2


def test_bad_requests_get_one_line_and_leave_nothing(exported, tmp_path):
    out = tmp_path / "out"
    assert_usage_error(
        run_cli("export", MODEL, "--out", str(out), "--format", "tflite", cwd=exported), "--format", "onnx, openvino"
    )
    assert_usage_error(
        run_cli("export", MODEL, "--out", str(out), "--bank-precision", "int8", cwd=exported), "--bank-precision"
    )
    (tmp_path / "a_file").write_text("x")
    assert_usage_error(
        run_cli("export", MODEL, "--out", str(tmp_path / "a_file"), cwd=exported), "a_file", "not a folder"
    )
    assert_usage_error(run_cli("export", MODEL, "--out", str(tmp_path / "a_file/sub"), cwd=exported), "a_file")
    assert_usage_error(run_cli("export", "features/nowhere", "--out", str(out), cwd=exported), "model.json")
    assert not out.exists()
    image = str(exported / "data/sample/hazelnut_toy/test/good/04.jpg")
    (tmp_path / "fake.onnx").write_bytes(b"not a model")
    assert_usage_error(
        run_cli("predict", str(tmp_path / "fake.onnx"), image, "--runtime", "onnx", "--out", str(out), cwd=exported),
        "fake.onnx",
        "patchcore export",
    )
    assert_usage_error(
        run_cli("predict", MODEL, image, "--runtime", "tensorrt", "--out", str(out), cwd=exported), "--runtime"
    )
    assert not (out / "predictions.jsonl").exists()


def test_a_bank_of_another_fingerprint_cannot_be_exported(exported, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(exported / MODEL, model)
    with h5py.File(model / "bank.h5", "r+") as f:
        fp = json.loads(str(f.attrs["fingerprint"]))
        f.attrs["fingerprint"] = json.dumps({**fp, "category": "screw"}, sort_keys=True)
    assert_usage_error(
        run_cli("export", str(model), "--out", str(tmp_path / "out"), cwd=exported), "bank.h5", "'screw'"
    )
    assert not (tmp_path / "out").exists()


def test_a_file_that_does_not_give_evaluates_scores_is_not_written(exported, tmp_path):
    with open(exported / SCORES, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["score"] = f"{float(row['score']) * 1.001:.6f}"
    tampered = tmp_path / "scores.csv"
    with open(tampered, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = run_cli(
        "export",
        MODEL,
        "--out",
        str(tmp_path / "out"),
        "--check",
        str(tampered),
        "--record",
        str(tmp_path / "r.json"),
        cwd=exported,
    )
    assert_usage_error(result, "does not give evaluate's scores", "nothing was written")
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.json").exists()


def test_a_missing_openvino_names_the_extra(exported, tmp_path):
    shim = tmp_path / "shim/openvino"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('openvino is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shim")}
    result = run_cli("export", MODEL, "--out", str(tmp_path / "out"), "--format", "openvino", cwd=exported, env=env)
    assert_usage_error(result, "'openvino'", "pip install -e '.[export]'")
    assert not (tmp_path / "out").exists()


def test_the_parity_record_is_the_same_bytes_whatever_changes_the_last_digits(exported, monkeypatch):
    """Threads, graph optimisations and batch sizes change the order of onnxruntime's sums, so the raw errors
    differ in their last digits (as they do between two x86 CPUs); the record git keeps must not."""
    import onnxruntime

    from patchcore.export import parity

    onnx_path = exported / "models/lite0/model.onnx"
    level = onnxruntime.GraphOptimizationLevel
    checks = []
    for threads, optimise, batch in (
        (1, level.ORT_DISABLE_ALL, 8),
        (2, level.ORT_ENABLE_ALL, 8),
        (1, level.ORT_ENABLE_BASIC, 3),
        (2, level.ORT_DISABLE_ALL, 1),
    ):

        class Configured(Inspector):
            settings = (threads, optimise)

            def __init__(self, path, *args, **kwargs):
                super().__init__(path, *args, **kwargs)
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads, options.graph_optimization_level = self.settings
                self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        monkeypatch.setattr(parity, "Inspector", Configured)
        monkeypatch.setattr(parity, "BATCH", batch)
        checks.append(
            parity.check(
                onnx_path, None, exported / "data/sample/hazelnut_toy", exported / SCORES, "float32", onnx_path
            )
        )
    # another CPU's last digits, for certain: the same check with its error moved within the tolerance
    moved = json.loads(json.dumps(checks[0]))
    moved["runtimes"][0]["max_relative_score_error"] = (
        checks[0]["runtimes"][0]["max_relative_score_error"] * 1.37 + 1e-7
    )
    checks.append(moved)
    assert len({c["runtimes"][0]["max_relative_score_error"] for c in checks}) >= 2
    assert len({json.dumps(parity.stable(c), sort_keys=True) for c in checks}) == 1


def test_openvino_is_loaded_with_its_telemetry_off(tmp_path):
    """Offline line PCs: nothing may wait on a network or write into the user's home (~/intel) when OpenVINO loads."""
    code = "from patchcore.export.onnx_file import openvino; openvino('x'); import openvino_telemetry as t; print(t.Telemetry().consent)"
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"HOME": str(tmp_path)}  # CI=true would hide it
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split() == ["False"], done.stderr[-2000:]
    assert list(tmp_path.iterdir()) == [] and "CI" not in env


def _tampered(exported: Path, tmp_path: Path, edit) -> Path:
    model = onnx.load(str(exported / "models/lite0/model.onnx"))
    edit(model)
    out = tmp_path / "tampered" / "model.onnx"
    out.parent.mkdir(exist_ok=True)
    onnx.save_model(model, str(out))
    return out


def _set_meta(model, key: str, value) -> None:
    props = [p for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    if value is not _DROP:
        model.metadata_props.add(key=key, value=json.dumps(value))


_DROP = object()


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("threshold", _DROP, "metadata 'threshold' is missing"),
        ("score_range", _DROP, "metadata 'score_range' is missing"),
        ("input_size", 256, "the graph's input is"),
        ("threshold", float("inf"), "metadata 'threshold' must be a positive number"),
        ("score_range", [5.0, 1.0], "metadata 'score_range'"),
    ],
)
def test_exported_metadata_is_checked_against_the_graph_before_scoring(exported, tmp_path, key, value, needle):
    """An exported file travels: a missing threshold was a KeyError traceback, a wrong input size onnxruntime's
    words."""
    path = _tampered(exported, tmp_path, lambda m: _set_meta(m, key, value))
    images = exported / "data/sample/hazelnut_toy/test/good"
    result = run_cli(
        "predict", str(path), str(images), "--runtime", "onnx", "--out", str(tmp_path / "out"), cwd=exported
    )
    assert_usage_error(result, str(path), needle)
    assert not (tmp_path / "out").exists()


def test_external_data_is_refused_by_the_runtime_itself(exported, tmp_path):
    """Tensors 'stored beside' the model could name any file: the runtime loads from bytes and says so in its own
    words."""
    model = onnx.load(str(exported / "models/lite0/model.onnx"))
    folder = tmp_path / "external"
    folder.mkdir()
    onnx.save_model(
        model, str(folder / "model.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=1024
    )
    assert (folder / "weights.bin").is_file()
    images = exported / "data/sample/hazelnut_toy/test/good"
    result = run_cli(
        "predict",
        str(folder / "model.onnx"),
        str(images),
        "--runtime",
        "onnx",
        "--out",
        str(tmp_path / "out"),
        cwd=exported,
    )
    assert_usage_error(result, "external data files, which this runtime does not read")


@pytest.mark.parametrize(
    "text, needle",
    [
        ("a,b\n1,2\n", "it needs the columns image and score"),
        ("image,score\ntest/good/00.jpg,high\n", "line 2 needs a relative image path and a finite score"),
        ("image,score\n../../../etc/passwd,1.0\n", "line 2 needs a relative image path"),
        ("", "it needs the columns image and score"),
    ],
)
def test_check_names_a_csv_that_is_not_a_scores_csv(exported, tmp_path, text, needle):
    bad = tmp_path / "other.csv"
    bad.write_text(text)
    result = run_cli("export", MODEL, "--out", str(tmp_path / "m"), "--check", str(bad), cwd=exported)
    assert_usage_error(result, f"--check {bad}: not a scores.csv written by evaluate", needle)
    assert "not a readable image" not in result.stderr and not (tmp_path / "m").exists()
