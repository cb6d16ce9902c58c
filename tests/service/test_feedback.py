"""Reviews back into the pipeline: feedback export writes a folder data set that download and coreset take."""

from __future__ import annotations

import json

from conftest import MODEL, Server, images_of

from helpers import assert_usage_error, edit_params, run_cli, run_stages


def test_reviewed_images_become_a_folder_data_set_that_retrains(served_project, tmp_path):
    state = tmp_path / "state"
    server = Server(served_project, state)
    images = images_of(served_project)
    try:
        inspected = [server.inspect(image)[1] for image in images[:6]]
        for row, review in zip(inspected, ["defective", "good", "good", "good", "good"]):  # the sixth is not reviewed
            status, _ = server.json(
                "POST",
                f"/v1/inspections/{row['id']}/review",
                json.dumps({"review": review}).encode(),
                {"Content-Type": "application/json"},
            )
            assert status == 200
    finally:
        server.stop()
    out = tmp_path / "line_data"
    result = run_cli("feedback", "export", "--state", str(state), "--out", str(out), cwd=served_project)
    assert result.returncode == 0, result.stderr
    root = out / "hazelnut_toy"  # the served model's category
    assert sorted(p.name for p in (root / "test/defective").iterdir()) == [f"{inspected[0]['id']}.jpg"]
    assert sorted(p.name for p in (root / "train/good").iterdir()) == sorted(f"{r['id']}.jpg" for r in inspected[1:5])
    assert (root / "train/good" / f"{inspected[1]['id']}.jpg").read_bytes() == images[1].read_bytes()
    again = run_cli("feedback", "export", "--state", str(state), "--out", str(out), cwd=served_project)
    assert again.returncode == 0, again.stderr  # its own earlier export is replaced whole
    (tmp_path / "mine" / "hazelnut_toy").mkdir(parents=True)
    assert_usage_error(
        run_cli("feedback", "export", "--state", str(state), "--out", str(tmp_path / "mine"), cwd=served_project),
        "not written by",
    )
    assert_usage_error(
        run_cli("feedback", "export", "--state", str(tmp_path / "none"), "--out", str(out), cwd=served_project),
        "no service history",
    )

    edit_params(served_project, **{"download.line": {"source": "folder", "path": str(out)}, "run.dataset": "line"})
    try:
        result = run_cli("download", "-c", "hazelnut_toy", cwd=served_project)
        assert result.returncode == 0, result.stderr
        run_stages(served_project, "extract", "coreset", "evaluate")
        trained = json.loads((served_project / "features/line/hazelnut_toy/efficientnet_lite0/model.json").read_text())
        assert trained["dataset"] == "line" and trained["data"]["counts"]["train_good"] == 4
    finally:
        edit_params(served_project, **{"run.dataset": "sample"})
    assert (served_project / MODEL / "model.json").is_file()
