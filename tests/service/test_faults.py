"""A server killed with SIGKILL under load: on restart the history opens and holds every answered inspection."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import MODEL, Server, free_port, images_of

from helpers import assert_usage_error


def test_kill_9_under_load_loses_no_answered_inspection(served_project, tmp_path):
    state = tmp_path / "state"
    server = Server(served_project, state)
    images = images_of(served_project)
    answered: list[str] = []
    stop = threading.Event()

    def client(k: int) -> None:
        n = k
        while not stop.is_set():
            try:
                status, body = server.inspect(images[n % len(images)])
            except OSError:  # the server died mid-request: that one was never answered
                return
            if status == 200:
                answered.append(body["id"])
            n += 1

    clients = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for c in clients:
        c.start()
    while len(answered) < 12:
        assert server.process.poll() is None
        threading.Event().wait(0.05)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=30)
    stop.set()
    for c in clients:
        c.join(timeout=60)
    (state / "files" / ("0" * 32)).mkdir()  # as if killed after an inspection's files and before its row
    restarted = Server(served_project, state)
    try:
        status, page = restarted.json("GET", "/v1/inspections?limit=500")
        assert status == 200
        kept = {row["id"] for row in page["inspections"]}
        assert set(answered) <= kept, f"{len(set(answered) - kept)} answered inspections lost"
        for ident in answered[-3:]:
            assert restarted.call("GET", f"/v1/inspections/{ident}/heatmap")[0] == 200
        assert sorted(p.name for p in (state / "files").iterdir()) == sorted(kept)  # unfinished folders were swept
        assert restarted.inspect(images[0])[0] == 200
    finally:
        restarted.stop()


@contextlib.contextmanager
def small_disk(where: Path, size: str = "16m"):
    """A file system of its own for the state (tmpfs), to fill up or make read-only for real; root only."""
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "none", str(where)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): the full-disk and read-only cases need one")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _serve_refused(project: Path, state: Path) -> subprocess.CompletedProcess:
    """`patchcore serve` that must refuse at start: bounded, so a server that starts after all fails the test in 2
    minutes."""
    command = [sys.executable, "-m", "patchcore", "serve", MODEL, "--state", str(state), "--port", str(free_port())]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)


def _fill(folder: Path) -> Path:
    """Fill the disk to its last byte (a file of zeros, in shrinking blocks)."""
    filler = folder / "filler"
    try:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    except OSError:
        return filler  # full already
    try:
        for block in (1 << 20, 1 << 14, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * block)
    finally:
        os.close(fd)
    return filler


def _inspections(state: Path) -> list[str]:
    return sorted(p.name for p in (state / "files").iterdir())


@contextlib.contextmanager
def served_on_a_small_disk(project: Path, tmp_path: Path):
    """A server whose state is on a disk of its own, after one inspection: (the disk, the state, the server, an
    image)."""
    with small_disk(tmp_path / "disk") as disk:
        state = disk / "state"
        server = Server(project, state, logs=tmp_path)  # its log off the small disk, which is filled
        image = images_of(project)[0]
        try:
            assert server.inspect(image)[0] == 200
            yield disk, state, server, image
        finally:
            server.stop()


def test_a_full_disk_is_a_507_that_keeps_nothing_and_the_service_stays_up(served_project, tmp_path):
    with served_on_a_small_disk(served_project, tmp_path) as (disk, state, server, image):
        before = _inspections(state)
        filler = _fill(disk)
        status, body = server.inspect(image)
        assert status == 507 and "full" in body["error"], body
        assert _inspections(state) == before  # no folder without a row, no partial temporary
        assert server.json("GET", "/v1/inspections")[1]["total"] == 1 and server.call("GET", "/healthz")[0] == 200
        filler.unlink()
        assert server.inspect(image)[0] == 200
        server.stop()
        filler = _fill(disk)
        assert_usage_error(
            _serve_refused(served_project, state), f"--state {state}", "is full"
        )  # named as such, not 'not a history'
        filler.unlink()
        restarted = Server(served_project, state, logs=tmp_path)
        try:
            assert restarted.json("GET", "/v1/inspections")[1]["total"] == 2
            assert not [p for p in (state / "files").iterdir() if p.name.startswith(".")]
        finally:
            restarted.stop()


def test_a_read_only_state_is_a_503_then_named_at_restart(served_project, tmp_path):
    with served_on_a_small_disk(served_project, tmp_path) as (disk, state, server, image):
        try:
            # files/ read-only under the running service (its database stays open, so the disk cannot be remounted)
            files = str(state / "files")
            subprocess.run(["mount", "--bind", files, files], check=True)
            subprocess.run(["mount", "-o", "remount,bind,ro", files], check=True)
            status, body = server.inspect(image)
            assert status == 503 and "cannot be written" in body["error"], body
            assert server.json("GET", "/v1/inspections")[1]["total"] == 1 and server.call("GET", "/healthz")[0] == 200
        finally:
            server.stop()
            subprocess.run(["umount", str(state / "files")], check=False)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        result = _serve_refused(served_project, state)
        assert_usage_error(result, f"--state {state}", "cannot be written")
        assert "not a patchcore service history" not in result.stderr


def test_a_deleted_history_refuses_uploads_and_the_restart_keeps_the_files(served_project, tmp_path):
    state = tmp_path / "state"
    server = Server(served_project, state)
    image = images_of(served_project)[0]
    try:
        assert server.inspect(image)[0] == 200
        kept = _inspections(state)
        (state / "history.sqlite").unlink()
        status, body = server.inspect(image)
        assert status == 503 and "deleted or replaced" in body["error"], body
        assert _inspections(state) == kept
    finally:
        server.stop()
    result = _serve_refused(served_project, state)
    assert_usage_error(result, "history.sqlite is missing but files/ holds 1 inspection(s)")
    assert _inspections(state) == kept


def test_deleted_files_are_a_404_naming_the_cause(server, served_project):
    status, row = server.inspect(images_of(served_project)[0])
    assert status == 200
    folder = Path(server.state) / "files" / row["id"]
    (folder / "heatmap.png").unlink()
    status, body = server.json("GET", row["heatmap"])
    assert status == 404 and "heatmap file is missing" in body["error"]
    shutil.rmtree(folder)
    status, body = server.json("GET", row["image_url"])
    assert status == 404 and "image file is missing" in body["error"]


def _failing_model(path: Path) -> Path:
    """A file whose metadata and input pass every check but whose graph fails when it runs (a Reshape that cannot
    fit)."""
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 224, 224, 3])
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])
    amap = helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["batch", 224, 224])
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["x", "axes"], ["score"], keepdims=0),
        helper.make_node("Reshape", ["x", "bad"], ["anomaly_map"]),
    ]
    axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
    bad = helper.make_tensor("bad", TensorProto.INT64, [3], [7, 11, 13])
    model = helper.make_model(
        helper.make_graph(nodes, "broken", [image], [score, amap], [axes, bad]),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    model.ir_version = 9
    meta = {
        "format_version": 1,
        "input_size": 224,
        "resize": 224,
        "interpolation": "bilinear",
        "threshold": 2.0,
        "pixel_threshold": 1.0,
    }
    meta |= {
        "score_range": [1.0, 3.0],
        "heat_scale": 3.0,
        "dataset": "x",
        "category": "x",
        "backbone": "x",
        "weights": "x",
    }
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save_model(model, str(path))
    return path


def test_a_warm_up_that_fails_stops_the_process_with_one_line(served_project, tmp_path):
    model = _failing_model(tmp_path / "broken.onnx")
    command = [
        sys.executable,
        "-m",
        "patchcore",
        "serve",
        str(model),
        "--runtime",
        "onnx",
        "--port",
        str(free_port()),
        "--state",
        str(tmp_path / "s"),
    ]
    done = subprocess.run(command, cwd=served_project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "failed its warm-up" in errors[0], done.stderr[-2000:]
