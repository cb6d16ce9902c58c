"""Data sets: user folders, archives and URLs, and every kind of bad input failing cleanly."""

import errno
import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from patchcore.config import DatasetSpec
from patchcore.datasets import materialise as download
from patchcore.datasets.images import mask_array, to_rgb
from patchcore.errors import UsageError

from helpers import assert_usage_error, edit_params, files_under, run_cli, run_stages, small_copy
from httpserver import ArchiveServer


def use_dataset(project: Path, name: str, entry: dict, category: str = "widget") -> None:
    edit_params(
        project,
        **{
            f"download.{name}": entry,
            "run.dataset": name,
            "run.categories": [category],
            "run.backbones": ["efficientnet_lite0"],
        },
    )


@pytest.fixture
def user_folder(sample_root, tmp_path) -> Path:
    """A user's own data set: <path>/widget in MVTec layout, made of the sample's photos."""
    root = small_copy(sample_root, tmp_path / "user" / "widget", train=6, good=2, defective=3)
    return root


def test_user_folder_runs_the_whole_pipeline_and_skips_unmasked_defects(project, user_folder, sample_root):
    # a second defect type without any ground_truth folder: image metrics only
    (user_folder / "test/scratch").mkdir()
    for name in ("10.jpg", "11.jpg"):
        shutil.copy(sample_root / "test/colour" / name, user_folder / "test/scratch" / name)
    # junk that file browsers and archivers leave behind
    (user_folder / "train/good/.DS_Store").write_bytes(b"\0junk")
    (user_folder / "train/good/Thumbs.db").write_bytes(b"junk")
    (user_folder / "__MACOSX").mkdir()
    (user_folder / "__MACOSX/._00.jpg").write_bytes(b"junk")
    use_dataset(project, "mine", {"source": "folder", "path": str(user_folder.parent)})
    result = run_cli("download", "-c", "widget", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "6 train_good" in result.stdout and "5 test_defective" in result.stdout and "3 masks" in result.stdout
    assert (
        not (project / "data/mine/widget/__MACOSX").exists()
        and not (project / "data/mine/widget/train/good/.DS_Store").exists()
    )
    run_stages(project, "extract", "coreset", "evaluate", category="widget")
    record = json.loads((project / "metrics/mine/efficientnet_lite0/widget.json").read_text())
    assert record["dataset"] == "mine" and record["test_images"] == 7 and record["defective_images"] == 5
    assert record["pixel_skipped_defect_types"] == ["scratch"] and record["masks_used"] == 3
    assert record["pixel_auroc"] is not None and record["image_auroc"] >= 0.8


def _truncate(root):
    path = root / "test/colour/00.jpg"
    path.write_bytes(path.read_bytes()[:2000])
    return path


def _not_an_image(root):
    path = root / "train/good/05.png"
    path.write_bytes(b"this is a text file with an image extension\n")
    return path


def _mask_size(root):
    path = root / "ground_truth/colour/01.png"
    Image.open(path).resize((100, 100)).save(path)
    return path


def _missing_mask(root):
    (root / "ground_truth/colour/02.png").unlink()
    return root / "test/colour/02.jpg"


def _empty_train(root):
    for f in (root / "train/good").iterdir():
        f.unlink()
    return root / "train/good"


def _bomb(root):
    path = root / "train/good/99.png"
    Image.new("1", (10_000, 10_000)).save(path)  # 100 megapixels in a few kB
    return path


@pytest.mark.parametrize("damage", [_truncate, _not_an_image, _mask_size, _missing_mask, _empty_train, _bomb])
def test_bad_images_are_named_and_nothing_is_left_in_data(project, user_folder, damage):
    bad = damage(user_folder)
    use_dataset(project, "mine", {"source": "folder", "path": str(user_folder.parent)})
    result = run_cli("download", "-c", "widget", cwd=project)
    assert_usage_error(result, bad.name)
    assert files_under(project / "data" / "mine") == [] and not (project / "data" / "mine").exists()


def _tar(root: Path, dest: Path, extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(root, arcname=root.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


def test_local_archive_with_wrong_checksum(project, user_folder, tmp_path):
    archive = _tar(user_folder, tmp_path / "widget.tar.gz")
    use_dataset(project, "mine", {"source": "archive", "path": str(archive), "sha256": "0" * 64})
    assert_usage_error(run_cli("download", "-c", "widget", cwd=project), "sha256", "widget.tar.gz")
    assert files_under(project / "data" / "mine") == [] and not (project / "data" / "mine").exists()


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_path_traversal_members_are_refused(project, user_folder, tmp_path, kind):
    evil = "widget/../../../escaped.txt"
    if kind == "tar":
        archive = _tar(user_folder, tmp_path / "widget.tar.gz", {evil: b"pwned"})
    else:
        archive = tmp_path / "widget.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for f in sorted(user_folder.rglob("*")):
                if f.is_file():
                    zf.write(f, f"widget/{f.relative_to(user_folder)}")
            zf.writestr(evil, b"pwned")
    use_dataset(project, "mine", {"source": "archive", "path": str(archive)})
    assert_usage_error(run_cli("download", "-c", "widget", cwd=project), archive.name)
    assert not list(project.parent.rglob("escaped.txt"))
    assert files_under(project / "data" / "mine") == [] and not (project / "data" / "mine").exists()


def test_url_source_downloads_verifies_and_unpacks(project, user_folder, tmp_path):
    import hashlib

    body = _tar(user_folder, tmp_path / "widget.tar.gz").read_bytes()
    with ArchiveServer({"widget.tar.gz": body}, cut_first=True) as server:
        use_dataset(
            project,
            "remote",
            {"source": "url", "url": server.url("widget.tar.gz"), "sha256": hashlib.sha256(body).hexdigest()},
        )
        result = run_cli(
            "download", "-c", "widget", cwd=project, env=dict(os.environ, PATCHCORE_CACHE=str(tmp_path / "cache"))
        )
    assert result.returncode == 0, result.stderr
    assert len(list((project / "data/remote/widget/train/good").iterdir())) == 6
    assert (tmp_path / "cache/remote/widget.tar.gz").is_file()  # kept for the next run


def test_incomplete_mvtec_copy_is_caught_by_its_file_counts(project, user_folder):
    shutil.copytree(user_folder, user_folder.parent / "bottle")
    edit_params(
        project,
        **{"download.mvtec.path": str(user_folder.parent), "run.dataset": "mvtec", "run.categories": ["bottle"]},
    )
    assert_usage_error(run_cli("download", "-c", "bottle", cwd=project), "MVTec AD bottle", "209")
    assert files_under(project / "data" / "mvtec") == []


def test_mvtec_without_network_says_how_to_use_a_local_copy(project, tmp_path):
    edit_params(project, **{"run.dataset": "mvtec", "run.categories": ["toothbrush"]})
    result = run_cli(
        "download", "-c", "toothbrush", cwd=project, env=dict(os.environ, PATCHCORE_CACHE=str(tmp_path / "cache"))
    )
    assert_usage_error(result, "offline", "path")
    assert files_under(project / "data" / "mvtec") == []


def test_full_disk_leaves_nothing_behind(user_folder, tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copy2", no_space)  # the disk fills while copying the images
    target = tmp_path / "data/mine/widget"
    with pytest.raises(UsageError, match="cannot write .*widget: No space left on device; free space"):
        download.run(DatasetSpec(name="mine", source="folder", path=str(user_folder.parent)), "widget", target)
    assert files_under(tmp_path / "data") == []  # not even the data set's folder, made for this download


def test_every_image_mode_becomes_the_same_rgb():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(16, 16), dtype=np.uint8)
    rgb = np.stack([grey, grey // 2, 255 - grey], axis=-1)
    ref_grey = np.asarray(to_rgb(Image.fromarray(grey)))
    sixteen = Image.fromarray(grey.astype(np.uint16) * 257)  # same picture at 16 bits
    assert sixteen.mode == "I;16"
    assert np.array_equal(np.asarray(to_rgb(sixteen)), ref_grey)
    assert np.array_equal(np.asarray(to_rgb(Image.fromarray(rgb).convert("RGBA"))), rgb)
    assert np.array_equal(np.asarray(to_rgb(Image.fromarray(rgb).convert("CMYK"))), rgb)
    palette = Image.fromarray(rgb).quantize(64)
    assert np.array_equal(np.asarray(to_rgb(palette)), np.asarray(palette.convert("RGB")))
    # masks: 0/1 and 0/255 both binarise the same; an opaque alpha channel does not mark every pixel
    m = grey > 128
    assert np.array_equal(mask_array(Image.fromarray(m.astype(np.uint8))), m)
    assert np.array_equal(mask_array(Image.fromarray(m.astype(np.uint8) * 255).convert("RGBA")), m)


def test_classes_lists_mvtec_and_local_categories(project, user_folder):
    shutil.copytree(user_folder, project / "data/mine/widget")
    out = run_cli("classes", cwd=project).stdout
    assert "MVTec AD classes (15)" in out and "screw" in out and "zipper" in out
    assert "mine/widget: 6 train/good, 2 test good, 3 test defective, 3 masks" in out
