"""The Ray engine: the same bytes as the local engine, also after a worker is killed mid-run.

Ray starts on this machine inside each command (RAY_ADDRESS unset), with a bounded object store.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from patchcore.engines.settings import from_env
from patchcore.errors import UsageError

from helpers import assert_usage_error, lite0_model, run_cli, run_stages

pytest.importorskip("ray")

MODEL = "features/sample/hazelnut_toy/efficientnet_lite0"
OUTPUTS = [
    f"{MODEL}/train.h5",
    f"{MODEL}/test.h5",
    f"{MODEL}/bank.h5",
    f"{MODEL}/model.json",
    "metrics/sample/efficientnet_lite0/hazelnut_toy.json",
]
RAY = {
    "PATCHCORE_ENGINE": "ray",
    "PATCHCORE_RAY_WORKERS": "2",
    "PATCHCORE_RAY_SHARD_BATCHES": "1",
    "PATCHCORE_RAY_OBJECT_STORE_MB": "256",
}


def _env(**extra):
    return {**os.environ, **RAY, **extra}


@pytest.fixture(scope="module")
def local(sample_root, tmp_path_factory):
    """A Lite0 model made by the local engine, and its predictions of the test images."""
    project = lite0_model(
        sample_root,
        tmp_path_factory.mktemp("local"),
        (12, 3, 5),
        **{"extract.batch_size": 2, "coreset.holdout_fraction": 0.2, "coreset.holdout_folds": 0},
    )
    result = run_cli("predict", MODEL, "data/sample/hazelnut_toy/test", "--out", "out", cwd=project)
    assert result.returncode == 0, result.stderr
    return project


def _fresh(local, target):
    shutil.copytree(local, target, ignore=shutil.ignore_patterns("features", "metrics", "plots", "out"))
    return target


def test_ray_writes_the_bytes_the_local_engine_writes(local, tmp_path):
    project = _fresh(local, tmp_path / "p")
    run_stages(project, "extract", env=_env())
    run_stages(project, "coreset")
    run_stages(project, "evaluate", env=_env())
    for name in OUTPUTS:
        assert (project / name).read_bytes() == (local / name).read_bytes(), name
    assert json.loads((project / OUTPUTS[-1]).read_text())["devices"]["extract"] == "cpu"
    result = run_cli("predict", MODEL, "data/sample/hazelnut_toy/test", "--out", "out", cwd=project, env=_env())
    assert result.returncode == 0, result.stderr
    assert (project / "out/predictions.jsonl").read_bytes() == (local / "out/predictions.jsonl").read_bytes()
    heatmaps = sorted(p.name for p in (local / "out/heatmaps").iterdir())
    assert heatmaps and heatmaps == sorted(p.name for p in (project / "out/heatmaps").iterdir())
    assert all(
        (project / "out/heatmaps" / h).read_bytes() == (local / "out/heatmaps" / h).read_bytes() for h in heatmaps
    )


def _worker_pids(title: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if title in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_worker_killed_mid_run_is_replaced_and_the_bytes_stay_the_same(local, tmp_path):
    project = _fresh(local, tmp_path / "p")
    command = [sys.executable, "-m", "patchcore", "extract", "-c", "hazelnut_toy", "-b", "efficientnet_lite0"]
    process = subprocess.Popen(
        command, cwd=project, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and process.poll() is None and time.monotonic() < deadline:
        busy = _worker_pids("ray::ExtractWorker.features_of")  # an actor inside a shard, not idle
        if busy:
            os.kill(busy[0], signal.SIGKILL)
            killed = busy[0]
        time.sleep(0.02)
    _, stderr = process.communicate(timeout=600)
    assert killed is not None, "no worker was caught inside a shard"
    assert process.returncode == 0, stderr
    for name in OUTPUTS[:2]:
        assert (project / name).read_bytes() == (local / name).read_bytes(), name


def test_an_unreachable_cluster_is_one_line_naming_ray_address(local, tmp_path):
    project = _fresh(local, tmp_path / "p")
    result = run_cli(
        "extract", "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=project, env=_env(RAY_ADDRESS="127.0.0.1:9")
    )
    assert_usage_error(result, "RAY_ADDRESS=127.0.0.1:9: no Ray cluster answers at 127.0.0.1:9", "unset RAY_ADDRESS")
    assert not (project / "features").exists() or not any((project / "features").rglob("*.h5"))


def test_workers_wider_than_the_cluster_are_refused_instead_of_waiting_forever(local, tmp_path):
    project = _fresh(local, tmp_path / "p")
    result = run_cli(
        "extract", "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=project, env=_env(PATCHCORE_RAY_CPUS="4096")
    )
    assert_usage_error(result, "PATCHCORE_RAY_CPUS=4096", "CPU slots", "wait forever")
    assert not (project / "features").exists()


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"PATCHCORE_ENGINE": "spark"}, "PATCHCORE_ENGINE='spark'"),
        ({"PATCHCORE_RAY_WORKERS": "0"}, "PATCHCORE_RAY_WORKERS='0'"),
    ],
)
def test_engine_variables_are_checked(environ, needle):
    assert (
        from_env({}).engine == "local"
        and from_env({"PATCHCORE_ENGINE": "ray", "PATCHCORE_RAY_WORKERS": "3"}).workers == 3
    )
    with pytest.raises(UsageError, match=needle):
        from_env(environ)


def test_ray_extracts_and_scores_tiled_pictures_as_the_local_engine_does(sample_root, tmp_path):
    """Tiles on Ray: a shard's pictures are cut by the worker, a picture's tiles stay together, and its scores and
    maps are the local engine's."""
    tiles = {"backbones.efficientnet_lite0.geometry": {"name": "tiles", "scale": 0.5, "overlap": 64}}
    changes = {"extract.batch_size": 3, "coreset.holdout_fraction": 0.2, "coreset.holdout_folds": 0, **tiles}
    (tmp_path / "local").mkdir()
    local = lite0_model(sample_root, tmp_path / "local", (6, 2, 3), **changes)
    project = _fresh(local, tmp_path / "ray")
    run_stages(project, "extract", env=_env())
    run_stages(project, "coreset")
    run_stages(project, "evaluate", env=_env())
    import h5py
    import numpy as np

    for split in ("train", "test"):
        with h5py.File(local / MODEL / f"{split}.h5") as a, h5py.File(project / MODEL / f"{split}.h5") as b:
            assert a["views"][()].tolist() == b["views"][()].tolist() == [4] * len(a["labels"])
            np.testing.assert_allclose(b["patches"][()], a["patches"][()], rtol=1e-5, atol=1e-5)
    ours, theirs = (json.loads((p / OUTPUTS[-1]).read_text()) for p in (project, local))
    assert ours["image_auroc"] == theirs["image_auroc"]
    assert ours["full_size"] == pytest.approx(theirs["full_size"], abs=1e-5)
