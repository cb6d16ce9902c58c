"""Hostile-but-fair input: wrong models, damaged intermediates and weights, failed writes, signals.

Each case must end in one `error:` line naming the file and the fix, exit code 2, and leave no
partial output (no temporaries, no empty folders).
"""

import json
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import h5py
import pytest

from helpers import REPO, assert_usage_error, edit_params, run_cli, run_stages, small_copy

FOLDER = "features/sample/hazelnut_toy/{}"


def _leftovers(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(".*") if p.name.endswith((".tmp", ".old")))


@pytest.fixture(scope="module")
def models(sample_root, tmp_path_factory):
    """A project with two trained models of the same feature width: Lite0 and Lite1 (152 dims each)."""
    project = tmp_path_factory.mktemp("robust")
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    small_copy(sample_root, project / "data/sample/hazelnut_toy", train=6, good=2, defective=3)
    edit_params(
        project,
        **{
            "run.categories": ["hazelnut_toy"],
            "run.backbones": ["efficientnet_lite0", "efficientnet_lite1"],
            "coreset.holdout_fraction": 0.2,
            "coreset.holdout_folds": 0,
        },
    )
    for backbone in ("efficientnet_lite0", "efficientnet_lite1"):
        run_stages(project, "extract", "coreset", "evaluate", backbone=backbone)
    return project


@pytest.fixture
def copy(models, tmp_path):
    """A scratch copy of the trained project, free to damage."""
    target = tmp_path / "p"
    shutil.copytree(models, target)
    return target


def test_a_bank_of_another_backbone_is_refused_by_predict_and_evaluate(copy):
    lite0, lite1 = copy / FOLDER.format("efficientnet_lite0"), copy / FOLDER.format("efficientnet_lite1")
    shutil.copy(lite1 / "bank.h5", lite0 / "bank.h5")  # same width: only the fingerprint can tell
    image = copy / "data/sample/hazelnut_toy/test/good/04.jpg"
    result = run_cli("predict", str(lite0), str(image), cwd=copy)
    assert_usage_error(result, "bank.h5", "model.json", "tf_efficientnet_lite0", "tf_efficientnet_lite1")
    result = run_cli("evaluate", "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=copy)
    assert_usage_error(result, "bank.h5", "tf_efficientnet_lite1")


def test_a_model_card_edited_away_from_its_fingerprint_is_refused(copy):
    folder = copy / FOLDER.format("efficientnet_lite0")
    card = json.loads((folder / "model.json").read_text())
    card["backbone"]["crop"] = 200
    card["backbone"]["resize"] = 200
    (folder / "model.json").write_text(json.dumps(card))
    result = run_cli("predict", str(folder), str(copy / "data/sample/hazelnut_toy/test/good/04.jpg"), cwd=copy)
    assert_usage_error(result, "crop", "200", "224")


def test_features_from_other_params_are_refused_by_evaluate(copy):
    edit_params(copy, **{"aggregation.border": "valid"})
    result = run_cli("evaluate", "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=copy)
    assert_usage_error(result, "params.yaml", "border", "valid", "zeros")


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("train.h5", "truncate"),
        ("test.h5", "truncate"),
        ("bank.h5", "truncate"),
        ("bank.h5", "garbage"),
        ("test.h5", "schema"),
    ],
)
def test_damaged_intermediates_are_one_line_naming_the_rebuild(copy, name, damage):
    path = copy / FOLDER.format("efficientnet_lite0") / name
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    elif damage == "garbage":
        path.write_bytes(b"not an HDF5 file at all" * 100)
    else:
        path.unlink()
        with h5py.File(path, "w") as f:
            f.create_dataset("something_else", data=[1, 2, 3])
    stage = {"train.h5": "extract", "test.h5": "extract", "bank.h5": "coreset"}[name]
    for command in (["coreset"] if name == "train.h5" else []) + ["evaluate"]:
        result = run_cli(command, "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=copy)
        assert_usage_error(result, name, f"dvc repro -f -s {stage}@hazelnut_toy-efficientnet_lite0")
    assert _leftovers(copy) == []


class _Hostile:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


@pytest.mark.parametrize("kind", ["archive", "pickle", "hostile", "text", "other_arch"])
def test_a_weights_file_that_is_not_this_networks_state_dict(copy, tmp_path, kind):
    weights = tmp_path / "weights.pth"
    if kind == "archive":
        with zipfile.ZipFile(weights, "w") as zf:
            zf.writestr("readme.txt", "not weights")
    elif kind == "pickle":
        weights.write_bytes(pickle.dumps([1, 2, 3]))
    elif kind == "hostile":
        weights.write_bytes(pickle.dumps(_Hostile()))
    elif kind == "text":
        weights.write_text("hello")
    else:
        import torch

        torch.save({"fc.weight": torch.zeros(2, 2)}, weights)
    edit_params(copy, **{"backbones.efficientnet_lite0.weights": str(weights)})
    result = run_cli("extract", "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=copy)
    assert_usage_error(result, "backbones.efficientnet_lite0.weights", str(weights))
    assert not (copy / "PWNED").exists()  # weights_only loading never runs code from the file


def _limited(limit_bytes):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


def test_a_write_beyond_the_file_size_limit_is_one_line_and_leaves_nothing(sample_root, project):
    small_copy(sample_root, project / "data/sample/hazelnut_toy", train=6, good=2, defective=3)
    result = subprocess.run(
        [sys.executable, "-m", "patchcore", "extract", "-c", "hazelnut_toy", "-b", "efficientnet_lite0"],
        cwd=project,
        capture_output=True,
        text=True,
        preexec_fn=_limited(1_000_000),
        timeout=600,
    )
    assert_usage_error(result, "cannot write", "train.h5", "File too large", "ulimit")
    assert not (project / "features").exists() and _leftovers(project) == []


def test_a_corrupt_local_archive_names_it_and_says_to_replace_it(project, tmp_path):
    archive = tmp_path / "parts.tar.xz"
    archive.write_bytes(b"\xfd7zXZ\x00\x00" + b"\x00" * 200)  # an xz header, then nothing usable
    edit_params(
        project,
        **{
            "download.mine": {"source": "archive", "path": str(archive)},
            "run.dataset": "mine",
            "run.categories": ["widget"],
        },
    )
    result = run_cli("download", "-c", "widget", cwd=project)
    assert_usage_error(result, str(archive), "replace it with a good copy", "download.mine.path")
    assert "delete" not in result.stderr
    assert not (project / "data/mine").exists()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stage_killed_mid_run_removes_its_temporaries(sample_root, project, sig, code):
    shutil.copytree(sample_root, project / "data/sample/hazelnut_toy")
    folder = project / FOLDER.format("efficientnet_lite2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "patchcore", "extract", "-c", "hazelnut_toy", "-b", "efficientnet_lite2"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job starts with SIGINT ignored, and Python keeps an ignored SIGINT
        # ignored: give the stage the default, as in a terminal, whatever started these tests
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not list(folder.glob(".train.h5.*.tmp")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(folder.glob(".train.h5.*.tmp")), "the stage never started writing"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-2000:]
    assert "Traceback" not in stderr
    assert _leftovers(project) == [] and not (folder / "train.h5").exists()


def test_evaluate_reserves_every_output_first_and_changes_none_when_one_cannot_be_written(copy):
    lite0 = ("evaluate", "-c", "hazelnut_toy", "-b", "efficientnet_lite0")
    plots, pictures = (
        copy / "plots/sample/efficientnet_lite0/hazelnut_toy",
        copy / "pictures/sample/efficientnet_lite0/hazelnut_toy",
    )
    outputs = [
        copy / "metrics/sample/efficientnet_lite0/hazelnut_toy.json",
        copy / FOLDER.format("efficientnet_lite0") / "model.json",
    ]
    outputs += [plots / name for name in ("scores.csv", "regions.json", "roc.json", "roc.png")]
    before = {p: p.read_bytes() for p in outputs}
    masks = sorted((pictures / "masks").iterdir())
    # a threshold no score reaches: the metrics, scores.csv and regions.json would all change
    edit_params(copy, **{"evaluate.threshold": {"method": "fixed", "value": 1.0e6}})
    (pictures / "maps.png").unlink()
    (pictures / "maps.png").mkdir()  # the last picture evaluate writes cannot be written
    result = run_cli(*lite0, cwd=copy)
    assert_usage_error(result, "maps.png", "folder is in the way", "nothing was written")
    assert "regions" not in result.stderr  # refused before scoring, not after
    assert {p: p.read_bytes() for p in outputs} == before and sorted((pictures / "masks").iterdir()) == masks
    assert _leftovers(copy) == []
    (pictures / "maps.png").rmdir()
    assert run_cli(*lite0, cwd=copy).returncode == 0
    assert json.loads(outputs[0].read_text())["threshold_metrics"]["threshold"] == 1.0e6 and _leftovers(copy) == []


def test_a_file_size_limit_while_unpacking_is_a_failed_write_not_a_damaged_archive(project):
    edit_params(
        project,
        **{
            "download.mine": {"source": "archive", "path": str(REPO / "data/bundled/hazelnut_toy.tar.gz")},
            "run.dataset": "mine",
        },
    )
    result = subprocess.run(
        [sys.executable, "-m", "patchcore", "download", "-c", "hazelnut_toy"],
        cwd=project,
        capture_output=True,
        text=True,
        preexec_fn=_limited(50_000),  # smaller than the photos inside
        timeout=600,
    )
    assert_usage_error(result, "cannot write data/mine/hazelnut_toy", "File too large", "ulimit")
    assert "damaged" not in result.stderr and not (project / "data/mine").exists() and _leftovers(project) == []


def test_a_resize_interpolation_other_than_the_models_is_refused_by_evaluate_and_predict(copy):
    edit_params(copy, **{"backbones.efficientnet_lite0.interpolation": "bicubic"})
    assert_usage_error(
        run_cli("evaluate", "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=copy),
        "interpolation",
        "bicubic",
        "bilinear",
    )
    folder = copy / FOLDER.format("efficientnet_lite0")
    card = json.loads((folder / "model.json").read_text())
    card["backbone"]["interpolation"] = "bicubic"
    (folder / "model.json").write_text(json.dumps(card))
    result = run_cli("predict", str(folder), str(copy / "data/sample/hazelnut_toy/test/good/04.jpg"), cwd=copy)
    assert_usage_error(result, "interpolation", "bicubic", "bilinear")
