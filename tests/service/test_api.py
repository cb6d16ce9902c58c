"""The service's API against a real server: predict's results, batching, history, reviews and every bad input."""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import MODEL, Server, images_of
from PIL import Image

from helpers import assert_usage_error, run_cli


def _multipart(name: str, data: bytes, field: str = "file") -> tuple[bytes, dict]:
    boundary = "patchcore-test-boundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    return head.encode() + data + f"\r\n--{boundary}--\r\n".encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"
    }


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="png")
    return out.getvalue()


def test_inspect_gives_predicts_record(server, served_project, tmp_path):
    images = images_of(served_project)[:2] + images_of(served_project)[-2:]  # defective ones, then good ones
    result = run_cli("predict", MODEL, *map(str, images), "--out", str(tmp_path / "p"), cwd=served_project)
    assert result.returncode == 0, result.stderr
    expected = [json.loads(line) for line in result.stdout.splitlines()]
    for image, want in zip(images, expected):
        body, headers = _multipart(image.name, image.read_bytes())
        status, got = server.json("POST", "/v1/inspect", body, headers)
        assert status == 200, got
        assert got["image"] == image.name and got["score"] == pytest.approx(want["score"], rel=1e-5)
        assert got["normalised_score"] == pytest.approx(want["normalised_score"], abs=1e-5)
        for key in ("verdict", "threshold", "size", "weights", "device", "model"):
            assert got[key] == want[key], key
        assert [r["area"] for r in got["regions"]] == [r["area"] for r in want["regions"]]
        assert got["heatmap"] == f"/v1/inspections/{got['id']}/heatmap"
        status, headers, png = server.call("GET", got["heatmap"])
        assert status == 200 and headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png)).size == Image.open(want["heatmap"]).size
        assert server.call("GET", got["image_url"])[2] == image.read_bytes()  # the upload, byte for byte
    assert {e["verdict"] for e in expected} == {"good", "anomalous"}


def test_concurrent_requests_are_batched_with_the_same_scores(server, served_project):
    images = images_of(served_project)[:8]
    alone = [server.inspect(image)[1]["score"] for image in images]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(server.inspect, images))
    assert all(status == 200 for status, _ in together)
    np.testing.assert_allclose([r["score"] for _, r in together], alone, rtol=1e-5)
    assert (
        max(server.json("GET", "/v1/model")[1]["service"]["recent_batches"]) > 1
    )  # one forward pass held several images


def test_model_card_says_where_the_numbers_come_from(server, served_project):
    status, card = server.json("GET", "/v1/model")
    made = json.loads((served_project / MODEL / "model.json").read_text())
    metrics = json.loads((served_project / "metrics/sample/efficientnet_lite0/hazelnut_toy.json").read_text())
    assert status == 200 and card["runtime"] == "torch"
    assert (card["dataset"], card["category"], card["backbone"], card["weights"]) == (
        "sample",
        "hazelnut_toy",
        "efficientnet_lite0",
        made["weights"],
    )
    assert card["threshold"] == made["threshold"] and card["pixel_threshold"] == made["pixel_threshold"]
    assert card["metrics"]["image_auroc"] == metrics["image_auroc"] and card["data"] == made["data"]
    assert server.json("GET", "/healthz") == (200, {"status": "ok"})
    assert server.json("GET", "/readyz")[1]["ready"] is True


def test_history_is_newest_first_filtered_and_paged(server, served_project):
    ids = [server.inspect(image)[1]["id"] for image in images_of(served_project)[:5]]
    seen, before = [], ""
    while True:
        status, page = server.json("GET", f"/v1/inspections?limit=2{before}")
        assert status == 200
        seen += [row["id"] for row in page["inspections"]]
        if page["next_before"] is None:
            break
        before = f"&before={page['next_before']}"
    assert seen[:5] == ids[::-1] and len(seen) == len(set(seen)) == page["total"]
    anomalous = server.json("GET", "/v1/inspections?verdict=anomalous&limit=500")[1]["inspections"]
    assert anomalous and all(row["verdict"] == "anomalous" for row in anomalous)
    assert len(anomalous) < page["total"]


def test_a_review_is_kept(server, served_project):
    inspected = server.inspect(images_of(served_project)[0])[1]
    body = json.dumps({"review": "defective"}).encode()
    status, reviewed = server.json(
        "POST", f"/v1/inspections/{inspected['id']}/review", body, {"Content-Type": "application/json"}
    )
    assert status == 200 and reviewed["review"] == "defective" and reviewed["reviewed_at"]
    assert server.json("GET", f"/v1/inspections/{inspected['id']}")[1]["review"] == "defective"


def _bad_requests(served_project) -> dict:
    jpg = images_of(served_project)[0].read_bytes()
    huge = _png(Image.new("1", (8100, 8000)))  # 64.8 MP in a few kB: refused before it is decoded
    return {
        "oversize": (413, "POST", "/v1/inspect", b"\0" * (33 * 1024 * 1024), {}, "32 MB"),
        "too many pixels": (413, "POST", "/v1/inspect", huge, {}, "pixel limit"),
        "text file": (415, "POST", "/v1/inspect", *_multipart("notes.txt", b"not an image\n"), "not a PNG, JPEG"),
        "truncated png": (
            400,
            "POST",
            "/v1/inspect",
            _png(Image.new("RGB", (300, 300), (9, 99, 199)))[:400],
            {},
            "damaged or truncated",
        ),
        "truncated jpeg": (400, "POST", "/v1/inspect", jpg[: len(jpg) // 3], {}, "damaged or truncated"),
        "empty": (400, "POST", "/v1/inspect", b"", {}, "empty"),
        "no file field": (400, "POST", "/v1/inspect", *_multipart("a.jpg", jpg, field="image"), "field 'file'"),
        "unknown id": (404, "GET", "/v1/inspections/" + "0" * 32, None, {}, "unknown inspection id"),
        "id with a path": (404, "GET", "/v1/inspections/..%2F..%2Fetc%2Fpasswd/image", None, {}, "no such endpoint"),
        "id of dots": (404, "GET", "/v1/inspections/%2E%2E/image", None, {}, "unknown inspection id"),
        "review unknown id": (
            404,
            "POST",
            "/v1/inspections/" + "f" * 32 + "/review",
            b'{"review": "good"}',
            {"Content-Type": "application/json"},
            "unknown",
        ),
        "review value": (
            422,
            "POST",
            "/v1/inspections/" + "f" * 32 + "/review",
            b'{"review": "fine"}',
            {"Content-Type": "application/json"},
            "review",
        ),
        "bad limit": (422, "GET", "/v1/inspections?limit=100000", None, {}, "limit"),
        "no such endpoint": (404, "GET", "/v1/nothing", None, {}, "no such endpoint"),
    }


def test_bad_requests_get_one_line_of_json_and_store_nothing(server, served_project):
    before = server.json("GET", "/v1/inspections?limit=1")[1]["total"]
    for name, (status, method, path, body, headers, needle) in _bad_requests(served_project).items():
        got, _, data = server.call(method, path, body, headers)
        answer = json.loads(data)
        assert got == status and needle in answer["error"] and "\n" not in answer["error"], (name, got, answer)
        assert "Traceback" not in answer["error"] and set(answer) == {"error"}, name
    assert server.json("GET", "/v1/inspections?limit=1")[1]["total"] == before
    assert server.process.poll() is None


def test_the_page_is_served_with_a_content_security_policy(server):
    status, headers, html = server.call("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert (
        "script-src 'self'" in headers["content-security-policy"]
        and "default-src 'none'" in headers["content-security-policy"]
    )
    assert b"http://" not in html and b"https://" not in html  # nothing from outside: the page works offline
    for asset in ("/app.js", "/style.css"):
        status, _, text = server.call("GET", asset)
        assert status == 200 and b"http://" not in text and b"https://" not in text


def test_beyond_loopback_only_with_a_token(served_project, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PATCHCORE_TOKEN"}
    for host in (
        "0.0.0.0",
        "10.1.2.3",
        "192.168.0.7",
        "172.16.0.1",
        "::",
    ):  # private is not loopback: refused, and at once
        result = run_cli(
            "serve", MODEL, "--host", host, "--state", str(tmp_path / "s"), cwd=served_project, env=env, timeout=60
        )
        assert result.returncode == 2 and "needs a token" in result.stderr and "Traceback" not in result.stderr, (
            host,
            result.stderr,
        )
    result = run_cli(
        "serve", MODEL, "--host", "0.0.0.0", cwd=served_project, env={**env, "PATCHCORE_TOKEN": "short"}, timeout=60
    )
    assert result.returncode == 2 and "at least 16" in result.stderr
    assert not (tmp_path / "s").exists()
    token = "a-long-enough-token-for-tests"
    guarded = Server(served_project, tmp_path / "state", host="0.0.0.0", token=token)
    try:
        guarded.token = None
        assert guarded.json("GET", "/v1/model")[0] == 401
        assert guarded.json("GET", "/v1/model", token="a-long-enough-token-for-test5")[0] == 401
        status, headers, _ = guarded.call("GET", "/v1/inspections", headers={"Authorization": "Basic " + token})
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        assert guarded.json("GET", "/v1/model", token=token)[0] == 200
        assert (
            guarded.call("GET", "/healthz")[0] == 200 and guarded.call("GET", "/")[0] == 200
        )  # probes and the page carry no data
    finally:
        guarded.stop()


def test_the_exported_file_serves_the_same_results(server, served_project, tmp_path):
    result = run_cli("export", MODEL, "--out", str(tmp_path / "exported"), cwd=served_project)
    assert result.returncode == 0, result.stderr
    onnx = Server(served_project, tmp_path / "state", "--runtime", "onnx", model=str(tmp_path / "exported"))
    try:
        for image in images_of(served_project)[:2] + images_of(served_project)[-1:]:
            want, got = server.inspect(image)[1], onnx.inspect(image)[1]
            assert got["score"] == pytest.approx(want["score"], rel=1e-4) and got["verdict"] == want["verdict"]
            assert len(got["regions"]) == len(want["regions"])
        card = onnx.json("GET", "/v1/model")[1]
        assert card["runtime"] == "onnx" and card["weights"] == server.json("GET", "/v1/model")[1]["weights"]
    finally:
        onnx.stop()


def test_a_missing_serve_package_names_the_extra(served_project, tmp_path):
    shim = tmp_path / "shim/uvicorn"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('uvicorn is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shim")}
    result = run_cli("serve", MODEL, "--state", str(tmp_path / "state"), cwd=served_project, env=env, timeout=60)
    assert_usage_error(result, "patchcore serve", "'uvicorn'", "pip install -e '.[serve]'")
    assert not (tmp_path / "state").exists()
