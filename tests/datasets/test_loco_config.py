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
