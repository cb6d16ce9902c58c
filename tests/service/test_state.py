"""The state folder is the service's alone, and feedback export reads only what the service wrote there.

In-process against History and feedback.main with small stand-in files (the model plays no part in
what is stored or read back), and through the CLI for the one-line refusals."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from patchcore.apps import feedback
from patchcore.apps.service.faults import Unavailable
from patchcore.apps.service.history import History
from patchcore.apps.service.state_folder import MARKER
from patchcore.errors import UsageError

from helpers import assert_usage_error, run_cli

RECORD = {"verdict": "good", "score": 1.0}


def _history(state: Path, reviews: list[str]) -> tuple[History, list[str]]:
    history = History(state)
    ids = []
    for i, review in enumerate(reviews):
        row = history.add(RECORD, f"image {i}".encode(), "png", b"heatmap", None)
        history.review(row["id"], review)
        ids.append(row["id"])
    return history, ids


def test_a_folder_the_service_did_not_make_is_refused_and_left_as_it_was(tmp_path):
    mine = tmp_path / "mine"
    (mine / "files").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    (mine / "files" / ("a" * 32)).mkdir()  # named like an inspection: still not the service's
    with pytest.raises(UsageError, match="holds files the service did not write"):
        History(mine)
    assert sorted(p.name for p in mine.rglob("*")) == sorted(["files", "notes.txt", "a" * 32])
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious.txt").write_text("keep")
    linked = tmp_path / "linked"
    linked.symlink_to(target)
    with pytest.raises(UsageError, match="is a symbolic link"):
        History(linked)
    assert [p.name for p in target.iterdir()] == ["precious.txt"]


def test_the_sweep_removes_only_what_the_service_wrote_and_follows_no_link(tmp_path):
    state = tmp_path / "state"
    history, ids = _history(state, ["good"])
    history.close()
    assert (state / MARKER).is_file()
    files = state / "files"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep")
    orphan, partial, linked = files / ("b" * 32), files / f".{'c' * 32}.tmp", files / ("d" * 32)
    orphan.mkdir()  # killed after its files, before its row
    partial.mkdir()  # killed while writing its files
    (partial / "image.png").write_text("x")
    (orphan / "escape").symlink_to(outside)  # a link inside a swept folder is removed, not followed
    linked.symlink_to(outside)  # a link named like an id: not the service's, left alone
    (files / "user-notes.txt").write_text("keep")
    (files / "user-folder").mkdir()
    history = History(state)
    assert history.swept == 2
    assert sorted(p.name for p in files.iterdir()) == sorted([ids[0], "d" * 32, "user-notes.txt", "user-folder"])
    assert [p.name for p in outside.iterdir()] == ["precious.txt"] and linked.is_symlink()
    history.close()


def test_files_as_a_link_is_refused_and_its_target_untouched(tmp_path):
    state = tmp_path / "state"
    _history(state, [])[0].close()
    (state / "files").rmdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ("e" * 32)).mkdir()  # would be swept as an orphan if the link were followed
    (state / "files").symlink_to(outside)
    with pytest.raises(UsageError, match="files is a symbolic link"):
        History(state)
    assert [p.name for p in outside.iterdir()] == ["e" * 32]


def test_a_database_deleted_under_the_service_refuses_instead_of_losing_answers(tmp_path):
    state = tmp_path / "state"
    history, _ = _history(state, ["good"])
    (state / "history.sqlite").unlink()
    with pytest.raises(Unavailable, match="was deleted or replaced") as caught:
        history.add(RECORD, b"image", "png", b"heatmap", None)
    assert caught.value.status == 503
    assert len(list((state / "files").iterdir())) == 1  # the first inspection's folder only: none without a row
    history.close()


def test_a_locked_history_refuses_the_inspection_and_keeps_no_files(tmp_path):
    state = tmp_path / "state"
    history, ids = _history(state, [])
    history.db.execute("PRAGMA busy_timeout = 100")
    other = sqlite3.connect(state / "history.sqlite", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(Unavailable, match="locked by another process") as caught:
            history.add(RECORD, b"image", "png", b"heatmap", None)
        assert caught.value.status == 503 and list((state / "files").iterdir()) == []
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert history.add(RECORD, b"image", "png", b"heatmap", None)["id"]
    history.close()


def test_a_deleted_file_is_a_404_naming_the_cause(tmp_path):
    state = tmp_path / "state"
    history, ids = _history(state, ["good", "good"])
    (state / "files" / ids[0] / "heatmap.png").unlink()
    with pytest.raises(Unavailable, match="heatmap file is missing") as caught:
        history.file(ids[0], "heatmap")
    assert caught.value.status == 404
    for child in (state / "files" / ids[1]).iterdir():
        child.unlink()
    (state / "files" / ids[1]).rmdir()
    with pytest.raises(Unavailable, match="image file is missing"):
        history.file(ids[1], "image")
    history.close()


def _export(state: Path, out: Path) -> str:
    return feedback.main(state, out, "widget")


def test_feedback_export_follows_no_link(tmp_path):
    state = tmp_path / "state"
    history, ids = _history(state, ["good", "defective"])
    history.close()
    secret = tmp_path / "secret.txt"
    secret.write_text("not an image of the line")
    image = state / "files" / ids[0] / "image.png"
    image.unlink()
    image.symlink_to(secret)
    with pytest.raises(UsageError, match="not a file the service wrote"):
        _export(state, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    image.unlink()
    image.write_bytes(b"image 0")
    elsewhere = tmp_path / "elsewhere"
    (state / "files" / ids[1]).rename(elsewhere)
    (state / "files" / ids[1]).symlink_to(elsewhere)  # the whole inspection folder is a link
    with pytest.raises(UsageError, match="not a file the service wrote"):
        _export(state, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "column, value", [("suffix", "png/../../../../etc/passwd"), ("review", "excellent"), ("id", "../" * 10 + "x" * 2)]
)
def test_feedback_export_refuses_a_tampered_history(tmp_path, column, value):
    state = tmp_path / "state"
    history, ids = _history(state, ["good", "defective"])
    history.db.execute(f"UPDATE inspections SET {column} = ? WHERE id = ?", (value, ids[1]))
    history.close()
    with pytest.raises(UsageError, match="changed outside the service"):
        _export(state, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_feedback_export_skips_and_names_a_deleted_image(tmp_path, capsys):
    state = tmp_path / "state"
    history, ids = _history(state, ["good", "defective", "good"])
    history.close()
    (state / "files" / ids[1] / "image.png").unlink()
    line = _export(state, tmp_path / "out")
    assert "2 good image(s)" in line and "0 defective" in line
    assert f"inspection {ids[1]}: its image is missing" in capsys.readouterr().err
    about = json.loads((tmp_path / "out/widget/feedback.json").read_text())
    assert about["skipped_missing"] == [ids[1]] and about["ids"] == [ids[0], ids[2]]
    assert (tmp_path / "out/widget/train/good" / f"{ids[0]}.png").read_bytes() == b"image 0"


def test_feedback_export_out_rules_in_one_line(tmp_path):
    state = tmp_path / "state"
    _history(state, ["good"])[0].close()
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    assert_usage_error(
        run_cli("feedback", "export", "--state", str(state), "--out", str(a_file), cwd=tmp_path), "is a file or a link"
    )
    assert a_file.read_text() == "mine"
    (tmp_path / "out").mkdir()
    (tmp_path / "out/line").write_text("mine too")
    assert_usage_error(
        run_cli(
            "feedback",
            "export",
            "--state",
            str(state),
            "--out",
            str(tmp_path / "out"),
            "--category",
            "line",
            cwd=tmp_path,
        ),
        "is a file or a link",
    )
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert_usage_error(
        run_cli("feedback", "export", "--state", str(mine), "--out", str(tmp_path / "o"), cwd=tmp_path), "did not write"
    )
    assert not (tmp_path / "o").exists() and [p.name for p in mine.iterdir()] == ["notes.txt"]
