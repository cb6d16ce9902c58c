"""MVTec AD 2's submission folder: what write_entry writes passes the check, and each breach of the server's rules is named."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from patchcore.benchmarks.mvtec_ad2 import MAPS, MASKS, OBJECTS, problems, write_entry

TINY = {"can": 2, "rice": 1}  # the real counts are 2,045 per split; the rules do not depend on them


def full(folder, threshold=0.5):
    rng = np.random.default_rng(0)
    for obj, n in TINY.items():
        for split in ("test_private", "test_private_mixed"):
            for i in range(n):
                write_entry(folder, obj, split, i, rng.random((6, 9)), threshold)
    return folder


def test_the_counts_are_the_private_splits_2045_images():
    assert sum(OBJECTS.values()) == 2045 and len(OBJECTS) == 8


def test_a_written_folder_is_ready_and_its_files_are_what_the_server_reads(tmp_path):
    folder = full(tmp_path / "sub")
    assert problems(folder, TINY) == []
    amap = tifffile.imread(folder / MAPS / "can/test_private_mixed/001_mixed.tiff")
    assert amap.dtype == np.float16 and amap.shape == (6, 9)
    mask = np.asarray(Image.open(folder / MASKS / "can/test_private/000_regular.png"))
    assert set(np.unique(mask).tolist()) <= {0, 255} and mask.shape == (6, 9)
    assert problems(full(tmp_path / "maps_only", threshold=None), TINY) == []  # masks are optional


@pytest.mark.parametrize(
    ("breach", "needle"),
    [
        (
            lambda f: (f / MAPS / "rice/test_private/000_regular.tiff").unlink(),
            "1 of 1 files missing, first 000_regular.tiff",
        ),
        (lambda f: (f / MAPS / "can/test_private/002_regular.tiff").write_bytes(b""), "unexpected files"),
        (
            lambda f: tifffile.imwrite(f / MAPS / "can/test_private/000_regular.tiff", np.ones((3, 3), np.float32)),
            "float16",
        ),
        (
            lambda f: Image.fromarray(np.full((6, 9), 7, np.uint8)).save(
                f / MASKS / "can/test_private/000_regular.png"
            ),
            "0 (normal) and 255",
        ),
        (lambda f: (f / MAPS / "can/test_private/001_regular.tiff").write_bytes(b"not a tiff"), "unreadable"),
        (lambda f: (f / "notes.txt").write_text("x"), "not part of a submission"),
        (lambda f: (f / MAPS / "rice/test_public").mkdir(), "not a private split"),
        (lambda f: __import__("shutil").rmtree(f / MASKS / "can"), "object can missing"),
    ],
)
def test_each_breach_is_one_line_naming_the_file(tmp_path, breach, needle):
    folder = full(tmp_path / "sub")
    breach(folder)
    found = problems(folder, TINY)
    assert len(found) == 1 and needle in found[0] and "\n" not in found[0], found


def scenario(root, drop=None):
    """A tiny unpacked scenario: 2 training, 1 validation, 1 good + 1 bad public test picture, 2 + 1 private."""
    rng = np.random.default_rng(1)
    files = [
        "train/good/000_regular.png",
        "train/good/001_regular.png",
        "validation/good/000_regular.png",
        "test_public/good/000_regular.png",
        "test_public/bad/000_overexposed.png",
        "test_private/000_regular.png",
        "test_private/001_regular.png",
        "test_private_mixed/000_mixed.png",
    ]
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 12, 3), dtype=np.uint8)).save(root / name)
    mask = np.zeros((8, 12), np.uint8)
    mask[2:4, 3:6] = 255
    (root / "test_public/ground_truth/bad").mkdir(parents=True)
    Image.fromarray(mask).save(root / "test_public/ground_truth/bad/000_overexposed_mask.png")
    if drop:
        __import__("shutil").rmtree(root / drop) if (root / drop).is_dir() else (root / drop).unlink()
    return root


def test_a_scenario_is_arranged_in_the_project_layout(tmp_path):
    from patchcore.datasets.layout import list_split
    from patchcore.datasets.mvtec_ad2 import arrange

    counts = arrange(scenario(tmp_path / "can"), tmp_path / "out")
    assert counts == {
        "train_good": 2,
        "validation_good": 1,
        "test_good": 1,
        "test_defective": 1,
        "test_private": 2,
        "test_private_mixed": 1,
    }
    test = list_split(tmp_path / "out", "test")
    assert [(s.path, s.label, s.mask) for s in test] == [
        ("test/bad/000_overexposed.png", 1, "ground_truth/bad/000_overexposed_mask.png"),
        ("test/good/000_regular.png", 0, ""),
    ]


@pytest.mark.parametrize(
    ("drop", "needle"),
    [
        ("validation", "validation/good: missing"),
        ("test_private_mixed", "test_private_mixed: missing"),
        ("test_public/ground_truth/bad/000_overexposed_mask.png", "not found; the mask of"),
    ],
)
def test_a_scenario_missing_a_split_or_mask_is_one_line(tmp_path, drop, needle):
    from patchcore.datasets.mvtec_ad2 import arrange
    from patchcore.errors import UsageError

    with pytest.raises(UsageError) as refusal:
        arrange(scenario(tmp_path / "can", drop), tmp_path / "out")
    assert needle in str(refusal.value) and "\n" not in str(refusal.value)
    assert not (tmp_path / "out").exists()  # nothing moved
