"""A model folder is untrusted input; a killed run's temporaries are swept; one predict per --out."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from helpers import assert_usage_error, edit_params, lite0_model, run_cli, run_stages, small_copy

MODEL = "features/sample/hazelnut_toy/efficientnet_lite0"


@pytest.fixture(scope="module")
def trained(sample_root, tmp_path_factory):
    return lite0_model(sample_root, tmp_path_factory.mktemp("untrusted"), (6, 2, 3))


def _copy(trained, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained / MODEL, model)
    return model


def _predict(trained, model, tmp_path):
    image = trained / "data/sample/hazelnut_toy/test/good/04.jpg"
    return run_cli("predict", str(model), str(image), "--out", str(tmp_path / "out"), cwd=tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("threshold", float("nan"), "finite"),
        ("threshold", float("inf"), "finite"),
        ("threshold", -1.0, "positive"),
        ("threshold", 0, "positive"),
        ("blur_sigma", -1.0, "[0, 64]"),
        ("blur_sigma", float("nan"), "finite"),
        ("heat_scale", float("nan"), "finite"),
        ("reweight_neighbours", -3, ">= 0"),
        ("pixel_threshold", float("-inf"), "finite"),
        ("score_range", [5.0, 1.0], "lowest, highest"),
    ],
)
def test_model_json_numbers_are_typed_and_ranged(trained, tmp_path, field, value, needle):
    model = _copy(trained, tmp_path)
    card = json.loads((model / "model.json").read_text())
    card[field] = value
    (model / "model.json").write_text(json.dumps(card))  # json writes NaN and Infinity as Python reads them
    result = _predict(trained, model, tmp_path)
    assert_usage_error(result, "model.json", field, needle)
    assert not (tmp_path / "out").exists()


def _rewrite_bank(model, make):
    """Replace bank.h5's 'bank' dataset by what make(file, rows) creates, keeping every other dataset and attribute."""
    with h5py.File(model / "bank.h5", "a") as f:
        rows = f["bank"][()]
        del f["bank"]
        make(f, rows)


def test_bank_datasets_stored_outside_the_file_are_refused(trained, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(os.urandom(4 * 152 * 50))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["rows"] = np.zeros((50, 152), np.float32)
    cases = {
        "external link": lambda f, rows: f.__setitem__("bank", h5py.ExternalLink(str(other), "rows")),
        "external files": lambda f, rows: f.create_dataset(
            "bank", shape=(50, 152), dtype=np.float32, external=[(str(secret), 0, h5py.h5f.UNLIMITED)]
        ),
        "virtual dataset": lambda f, rows: f.create_virtual_dataset("bank", _layout(other)),
    }
    for what, make in cases.items():
        model = _copy(trained, tmp_path / what.replace(" ", "_"))
        _rewrite_bank(model, make)
        result = _predict(trained, model, tmp_path / what.replace(" ", "_"))
        assert_usage_error(result, "bank.h5", "'bank'", "not data stored in the file itself")


def _layout(other):
    layout = h5py.VirtualLayout(shape=(50, 152), dtype=np.float32)
    layout[:] = h5py.VirtualSource(str(other), "rows", shape=(50, 152))
    return layout


def test_banks_with_nan_rows_or_no_rows_are_refused_by_predict_and_evaluate(trained, tmp_path):
    for what, edit in (
        ("NaN", lambda rows: np.where(np.arange(len(rows))[:, None] == 3, np.nan, rows)),
        ("no rows", lambda rows: rows[:0]),
    ):
        model = _copy(trained, tmp_path / what.replace(" ", "_"))
        _rewrite_bank(model, lambda f, rows, edit=edit: f.create_dataset("bank", data=edit(rows).astype(np.float32)))
        expected = "NaN or infinite" if what == "NaN" else "holds no rows"
        assert_usage_error(_predict(trained, model, tmp_path / what.replace(" ", "_")), "bank.h5", expected)
    project = tmp_path / "project"
    shutil.copytree(trained, project, ignore=shutil.ignore_patterns("metrics", "plots"))
    _rewrite_bank(project / MODEL, lambda f, rows: f.create_dataset("bank", data=np.full_like(rows, np.inf)))
    assert_usage_error(
        run_cli("evaluate", "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=project), "bank.h5", "NaN or infinite"
    )
    assert not (project / "metrics").exists()


def test_a_bank_or_features_of_another_category_are_refused(trained, sample_root, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(trained, project, ignore=shutil.ignore_patterns("metrics", "plots"))
    small_copy(sample_root, project / "data/sample/other", train=4, good=2, defective=2)
    edit_params(project, **{"run.categories": ["hazelnut_toy", "other"]})
    run_stages(project, "extract", "coreset", category="other")
    # a bank of the same backbone but another category, copied into this model folder
    model = _copy(project, tmp_path / "a")
    shutil.copy(project / "features/sample/other/efficientnet_lite0/bank.h5", model / "bank.h5")
    assert_usage_error(_predict(project, model, tmp_path / "a"), "category", "'hazelnut_toy'", "'other'")
    # evaluate given another category's train.h5 and test.h5
    for name in ("train.h5", "test.h5"):
        shutil.copy(project / "features/sample/other/efficientnet_lite0" / name, project / MODEL / name)
    assert_usage_error(
        run_cli("evaluate", "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=project), "category", "other"
    )


def test_a_killed_runs_temporaries_are_swept_by_the_next_run_and_never_listed(trained, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(trained, project, ignore=shutil.ignore_patterns("metrics", "plots"))
    folder = project / MODEL
    stage = subprocess.Popen(
        [sys.executable, "-m", "patchcore", "extract", "-c", "hazelnut_toy", "-b", "efficientnet_lite0"], cwd=project
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list(folder.glob(".train.h5.*.tmp")):
        time.sleep(0.02)
    stage.send_signal(signal.SIGKILL)  # no cleanup runs
    stage.wait()
    assert list(folder.glob(".train.h5.*.tmp")), "extract did not get to write its temporary before it was killed"
    # a leftover of an older version (no pid in its name) and a killed download's folder
    (folder / ".test.h5.abcd1234.h5.tmp").write_bytes(b"partial")
    (project / "data/sample/.hazelnut_toy.99999999.x1y2z3w4.tmp/train/good").mkdir(parents=True)
    listed = run_cli("classes", cwd=project)
    assert listed.returncode == 0 and ".hazelnut_toy" not in listed.stdout and "sample/hazelnut_toy" in listed.stdout
    run_stages(project, "extract")
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


def test_predict_refuses_an_out_folder_in_use_and_a_file_and_never_mixes_runs(trained, sample_root, tmp_path):
    model = trained / MODEL
    out = tmp_path / "out"
    images = trained / "data/sample/hazelnut_toy/test"
    first = run_cli("predict", str(model), str(images / "good"), "--out", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run_cli("predict", str(model), str(images / "colour" / "00.jpg"), "--out", str(out), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    # the second run's lines point at its own pictures only, and nothing of the first run is left
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and sorted(p.name for p in (out / "heatmaps").iterdir()) == [
        os.path.basename(lines[0]["heatmap"])
    ]
    import fcntl

    with open(out / ".predict.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        busy = run_cli("predict", str(model), str(images / "good"), "--out", str(out), cwd=tmp_path)
    assert_usage_error(busy, "--out", "another patchcore predict is writing there")
    (tmp_path / "a_file").write_text("x")
    assert_usage_error(
        run_cli("predict", str(model), str(images / "good"), "--out", str(tmp_path / "a_file"), cwd=tmp_path),
        "is a file",
    )
