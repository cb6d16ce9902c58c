"""VisA's one-class split file turned into the MVTec layout, on a tiny replica the test builds."""

import numpy as np
import pytest
from PIL import Image

from patchcore.datasets.layout import list_split
from patchcore.datasets.visa import SPLIT_FILE, fill
from patchcore.errors import UsageError

HEADER = "object,split,label,image,mask\n"


def replica(root, extra_rows=""):
    """Two objects; candle: 3 training, 1 good and 2 defective test pictures (masks hold class indices 1 and 3)."""
    rng = np.random.default_rng(0)
    lines = [HEADER]
    for obj in ("candle", "pcb1"):
        for name, split, label in [
            ("000", "train", "normal"),
            ("001", "train", "normal"),
            ("002", "train", "normal"),
            ("003", "test", "normal"),
            ("000", "test", "anomaly"),
            ("001", "test", "anomaly"),
        ]:
            kind = "Normal" if label == "normal" else "Anomaly"
            image = root / obj / "Data/Images" / kind / f"{name}.JPG"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)).save(image, format="JPEG")
            mask = ""
            if label == "anomaly":
                values = np.zeros((16, 20), np.uint8)
                values[2:6, 3:9] = 1 if name == "000" else 3
                (root / obj / "Data/Masks/Anomaly").mkdir(parents=True, exist_ok=True)
                Image.fromarray(values).save(root / obj / "Data/Masks/Anomaly" / f"{name}.png")
                mask = f"{obj}/Data/Masks/Anomaly/{name}.png"
            lines.append(f"{obj},{split},{label},{obj}/Data/Images/{kind}/{name}.JPG,{mask}\n")
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / SPLIT_FILE).write_text("".join(lines) + extra_rows)
    return root


def test_a_category_becomes_the_mvtec_layout_with_binary_masks(tmp_path):
    root = replica(tmp_path / "VisA")
    counts = fill(root, "candle", tmp_path / "candle")
    assert counts == {"train_good": 3, "test_good": 1, "test_defective": 2}
    test = list_split(tmp_path / "candle", "test")
    assert [(s.path, s.mask) for s in test if s.label] == [
        ("test/bad/000.JPG", "ground_truth/bad/000_mask.png"),
        ("test/bad/001.JPG", "ground_truth/bad/001_mask.png"),
    ]
    mask = np.asarray(Image.open(tmp_path / "candle/ground_truth/bad/001_mask.png"))
    assert mask.ndim == 2 and set(np.unique(mask).tolist()) == {0, 255} and (mask == 255).sum() == 24
    assert len(list_split(tmp_path / "candle", "train")) == 3


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("candle,test,anomaly,candle/Data/Images/Anomaly/009.JPG,candle/Data/Masks/Anomaly/000.png\n", "not found"),
        ("candle,test,normal,../outside.JPG,\n", "not a plain path inside the VisA folder"),
        ("candle,test,normal,/etc/passwd,\n", "not a plain path inside the VisA folder"),
        ("candle,valid,normal,candle/Data/Images/Normal/000.JPG,\n", "split 'valid'"),
        ("candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,\n", "a test anomaly row with mask ''"),
        ("candle,test,normal\n", "3 fields, expected 5"),
    ],
)
def test_a_wrong_split_file_is_one_line_naming_its_line(tmp_path, extra, needle):
    root = replica(tmp_path / "VisA", extra)
    with pytest.raises(UsageError) as refusal:
        fill(root, "candle", tmp_path / "candle")
    message = str(refusal.value)
    assert needle in message and "\n" not in message, message
    assert "1cls.csv line 14" in message  # the extra row, after the header and 12 rows
