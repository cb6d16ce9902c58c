"""Inputs that would hang, crash or flood the CLI: each is one `error:` line with exit 2 (predict: 1 for skipped images)."""

import os
import shutil

from PIL import Image

from helpers import assert_usage_error, edit_params, files_under, lite0_model, run_cli, small_copy


def test_params_yaml_with_a_duplicate_key_an_alias_bomb_or_a_huge_value(project):
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("  seed: 0\n", "  seed: 0\n  seed: 1\n", 1))
    assert_usage_error(run_cli("download", "-c", "hazelnut_toy", cwd=project), "params.yaml", "key 'seed' appears twice", "keep one")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, n in zip("abcdefgh", "bcdefghi")
    )
    (project / "params.yaml").write_text(params + bomb)
    result = run_cli("download", "-c", "hazelnut_toy", cwd=project)
    assert_usage_error(result, "params.yaml", "aliases expand to more than")
    assert len(result.stderr) < 2000
    (project / "params.yaml").write_text(params)
    edit_params(project, **{"coreset.ratio": "x" * 10_000_000})
    result = run_cli("download", "-c", "hazelnut_toy", cwd=project)
    assert_usage_error(result, "'coreset.ratio'")
    assert len(result.stderr) < 2000  # not the 10 MB value


def test_special_files_and_links_in_a_folder_source_are_refused_by_one_rule(sample_root, project, tmp_path):
    root = tmp_path / "user"
    edit_params(project, **{"download.mine": {"source": "folder", "path": str(root)}, "run.dataset": "mine", "run.categories": ["widget"]})
    cases = {
        "a FIFO": lambda p: os.mkfifo(p),
        "a device": lambda p: p.symlink_to("/dev/zero"),  # copied, it would fill the disk
        "a broken symbolic link": lambda p: p.symlink_to(tmp_path / "nowhere.png"),
        "cannot be followed": lambda p: p.symlink_to(p),
    }
    for needle, make in cases.items():
        shutil.rmtree(root, ignore_errors=True)
        small_copy(sample_root, root / "widget", train=4, good=1, defective=1)
        make(root / "widget/train/good/zz.png")
        result = run_cli("download", "-c", "widget", cwd=project)
        assert_usage_error(result, "train/good/zz.png", needle)
        assert files_under(project / "data/mine") == []
    # a link to a regular file is followed; a link to a folder is refused
    shutil.rmtree(root)
    small_copy(sample_root, root / "widget", train=4, good=1, defective=1)
    (root / "widget/train/good/linked.jpg").symlink_to(sample_root / "train/good" / sorted(os.listdir(sample_root / "train/good"))[-1])
    assert run_cli("download", "-c", "widget", cwd=project).returncode == 0
    assert (project / "data/mine/widget/train/good/linked.jpg").is_file() and not (project / "data/mine/widget/train/good/linked.jpg").is_symlink()
    (root / "widget/test/extra").symlink_to(root / "widget/test/good")
    assert_usage_error(run_cli("download", "-c", "widget", cwd=project), "test/extra", "symbolic link to a folder")


def test_predict_never_opens_a_fifo_and_refuses_giant_images(sample_root, tmp_path):
    (tmp_path / "p").mkdir()
    project = lite0_model(sample_root, tmp_path / "p", (4, 1, 1))
    model = project / "features/sample/hazelnut_toy/efficientnet_lite0"
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    shutil.copy(sample_root / "test/good/04.jpg", incoming / "ok.jpg")
    os.mkfifo(tmp_path / "camera.png")  # nobody writes into it: opening it would wait for ever
    Image.new("L", (8001, 8001)).save(tmp_path / "huge.png")  # 64 million pixels and one row: past the data sets' limit
    result = run_cli(
        "predict", str(model), str(incoming), str(tmp_path / "camera.png"), str(tmp_path / "huge.png"), "--out", str(tmp_path / "out"), cwd=tmp_path
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "camera.png: a FIFO, not a regular file" in errors[0] and "huge.png" in errors[1] and "pixel limit" in errors[1]
    assert len((tmp_path / "out/predictions.jsonl").read_text().splitlines()) == 1
