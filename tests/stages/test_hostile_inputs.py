"""Inputs that would hang, crash or flood the CLI: each is one `error:` line with exit 2 (predict: 1 for skipped
images)."""

import csv
import json
import os
import shutil
import struct
import zlib

from PIL import Image

from helpers import assert_usage_error, edit_params, files_under, lite0_model, run_cli, small_copy


def test_params_yaml_with_a_duplicate_key_an_alias_bomb_or_a_huge_value(project):
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("  seed: 0\n", "  seed: 0\n  seed: 1\n", 1))
    assert_usage_error(
        run_cli("download", "-c", "hazelnut_toy", cwd=project), "params.yaml", "key 'seed' appears twice", "keep one"
    )
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
    edit_params(
        project,
        **{
            "download.mine": {"source": "folder", "path": str(root)},
            "run.dataset": "mine",
            "run.categories": ["widget"],
        },
    )
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
    (root / "widget/train/good/linked.jpg").symlink_to(
        sample_root / "train/good" / sorted(os.listdir(sample_root / "train/good"))[-1]
    )
    assert run_cli("download", "-c", "widget", cwd=project).returncode == 0
    assert (project / "data/mine/widget/train/good/linked.jpg").is_file() and not (
        project / "data/mine/widget/train/good/linked.jpg"
    ).is_symlink()
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
    # 144 megapixels declared in the header alone: past Pillow's own warning limit (89 M), so only the
    # project's one line may speak for it, never Pillow's raw DecompressionBombWarning
    ihdr = struct.pack(">IIBBBBB", 12000, 12000, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    (tmp_path / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    )
    giants = [str(tmp_path / "camera.png"), str(tmp_path / "huge.png"), str(tmp_path / "bomb.png")]
    result = run_cli("predict", str(model), str(incoming), *giants, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert (
        len(errors) == 3
        and "camera.png: a FIFO, not a regular file" in errors[0]
        and "huge.png" in errors[1]
        and "pixel limit" in errors[1]
    )
    assert "bomb.png: 12000 x 12000 pixels is beyond" in errors[2]
    assert len((tmp_path / "out/predictions.jsonl").read_text().splitlines()) == 1


def test_damaged_data_deep_yaml_odd_metrics_and_engine_variables_are_one_line_naming_the_culprit(sample_root, project):
    lite0 = ("-c", "hazelnut_toy", "-b", "efficientnet_lite0")
    small_copy(sample_root, project / "data/sample/hazelnut_toy", train=4, good=1, defective=1)
    edit_params(project, **{"run.categories": ["hazelnut_toy"], "run.backbones": ["efficientnet_lite0"]})
    image = project / "data/sample/hazelnut_toy/train/good/01.jpg"
    intact = image.read_bytes()
    image.write_bytes(intact[:3000])  # damaged after download: a truncated JPEG
    assert_usage_error(
        run_cli("extract", *lite0, cwd=project),
        "train/good/01.jpg",
        "not a readable image",
        "download the data set again",
    )
    assert not (project / "features").exists()
    image.write_bytes(intact)
    for variable, value, needle in [
        ("RAY_ADDRESS", "head:99999", "port in 1-65535"),
        ("RAY_ADDRESS", "head:abc", "port in 1-65535"),
        ("PATCHCORE_RAY_OBJECT_STORE_MB", "10", "Ray refuses a smaller object store"),
    ]:
        env = {**os.environ, "PATCHCORE_ENGINE": "ray", variable: value}
        assert_usage_error(run_cli("extract", *lite0, cwd=project, env=env), variable, needle)
    # metrics files are work-tree files: valid JSON of the wrong shape is named, not a KeyError
    metrics = project / "metrics/sample/efficientnet_lite0/hazelnut_toy.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text('{"weights": "x", "features": [], "image_auroc": 2}')
    assert_usage_error(
        run_cli("summarize", cwd=project),
        str(metrics.relative_to(project)),
        "features",
        "dvc repro -f -s evaluate@hazelnut_toy",
    )
    (project / "list.json").write_text("[1, 2]")
    assert_usage_error(run_cli("gate", "list.json", "list.json", cwd=project), "list.json", "JSON object")
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text("run: " + "[" * 3000 + "]" * 3000 + "\n")
    assert_usage_error(run_cli("summarize", cwd=project), "params.yaml", "nested too deeply")
    (project / "params.yaml").write_text(params.replace("  seed: 0\n", f"  seed: {'9' * 5000}\n", 1))
    assert_usage_error(run_cli("summarize", cwd=project), "params.yaml", "5000 digits")


def test_a_bank_smaller_than_eq7s_neighbourhood_switches_the_reweighting_off_with_a_note(sample_root, tmp_path):
    (tmp_path / "p").mkdir()
    project = lite0_model(sample_root, tmp_path / "p", (6, 1, 2), **{"coreset.ratio": 0.0001})  # a one-patch bank
    record = json.loads((project / "metrics/sample/efficientnet_lite0/hazelnut_toy.json").read_text())
    assert (
        record["bank_size"] == 1
        and record["reweighting"]["on"] is False
        and "switched off" in record["reweighting"]["note"]
    )
    model = project / "features/sample/hazelnut_toy/efficientnet_lite0"
    assert json.loads((model / "model.json").read_text())["reweight_neighbours"] == 0
    # Eq. 7 over a one-patch neighbourhood weighs every score by 1 - 1 = 0: here they are distances
    scores = [
        float(row["score"])
        for row in csv.DictReader((project / "plots/sample/efficientnet_lite0/hazelnut_toy/scores.csv").open())
    ]
    assert min(scores) > 0 and len(set(scores)) == len(scores)
    predicted = run_cli(
        "predict", str(model), str(sample_root / "test/good/04.jpg"), "--out", str(tmp_path / "out"), cwd=tmp_path
    )
    assert predicted.returncode == 0 and json.loads(predicted.stdout.splitlines()[0])["score"] > 0
