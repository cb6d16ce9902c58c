"""MVTec LOCO AD's defects_config.json: read as the owners' evaluation reads it, refused in one line when wrong."""

import json

import pytest

from patchcore.datasets.loco import read_defect_types
from patchcore.errors import UsageError

PUSHPINS = [
    {
        "defect_name": "1_additional_pushpin",
        "pixel_value": 255,
        "saturation_threshold": 6300,
        "relative_saturation": False,
    },
    {"defect_name": "front_bent", "pixel_value": 252, "saturation_threshold": 1.0, "relative_saturation": True},
]


def write(tmp_path, entries):
    (tmp_path / "defects_config.json").write_text(entries if isinstance(entries, str) else json.dumps(entries))
    return tmp_path


def test_the_config_gives_each_mask_value_its_saturation(tmp_path):
    types = read_defect_types(write(tmp_path, PUSHPINS))
    assert types[255].saturation(10000) == 6300 and types[255].saturation(5000) == 5000  # pixels, capped at the area
    assert types[252].saturation(777) == 777  # a share of the defect


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        (None, "not found"),
        ("[", "not JSON"),
        ({"a": 1}, "non-empty list"),
        ([{k: v for k, v in PUSHPINS[0].items() if k != "saturation_threshold"}], "entry 0 saturation_threshold"),
        ([{**PUSHPINS[1], "saturation_threshold": 1.5}], "at most 1"),
        ([{**PUSHPINS[0], "pixel_value": 0}], "entry 0 pixel_value"),
        ([{**PUSHPINS[0], "relative_saturation": "no"}], "entry 0 relative_saturation"),
        ([PUSHPINS[0], {**PUSHPINS[1], "pixel_value": 255}], "pixel_value 255 is used twice"),
    ],
)
def test_a_wrong_config_is_one_line_naming_the_entry(tmp_path, entries, needle):
    root = tmp_path if entries is None else write(tmp_path, entries)
    with pytest.raises(UsageError) as refusal:
        read_defect_types(root)
    message = str(refusal.value)
    assert needle in message and "defects_config.json" in message and "\n" not in message, message


def test_a_pictures_defects_are_its_masks_with_their_saturation(tmp_path):
    import numpy as np
    from PIL import Image

    from patchcore.datasets.loco import defect_channels, union_mask

    types = read_defect_types(write(tmp_path, PUSHPINS))
    folder = tmp_path / "defects/logical_anomalies/005"
    folder.mkdir(parents=True)
    first, second = np.zeros((8, 10), np.uint8), np.zeros((8, 10), np.uint8)
    first[1:3, 1:4] = 255  # 6 pixels of an extra pushpin: saturation min(6300, 6)
    second[4:8, 5:10] = 252  # 20 pixels, relative 1.0
    Image.fromarray(first).save(folder / "000.png")
    Image.fromarray(second).save(folder / "001.png")
    channels = defect_channels(tmp_path, "logical_anomalies", "005", types)
    assert [(int(m.sum()), s) for m, s in channels] == [(6, 6), (20, 20)]
    union = union_mask(channels)
    assert union.dtype == np.uint8 and int((union == 255).sum()) == 26

    Image.fromarray(np.where(first > 0, 77, 0).astype(np.uint8)).save(folder / "000.png")
    with pytest.raises(UsageError, match="grey value 77 is not in defects_config.json"):
        defect_channels(tmp_path, "logical_anomalies", "005", types)
    with pytest.raises(UsageError, match="no defect masks for test/logical_anomalies/006.png"):
        defect_channels(tmp_path, "logical_anomalies", "006", types)
