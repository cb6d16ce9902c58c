"""MVTec AD 2 (Heckler-Kram et al., 2025) in the project's layout: a scenario of the owners' archive arranged.

A scenario holds train/good, validation/good (good pictures only: what thresholds are set on),
test_public/{good,bad} with test_public/ground_truth/bad/<stem>_mask.png, and the two private
test sets, test_private/NNN_regular.png and test_private_mixed/NNN_mixed.png, whose masks only
the benchmark's server holds.
"""

from __future__ import annotations

from pathlib import Path

from patchcore.datasets.layout import VALIDATION, check_regular, is_image_file
from patchcore.errors import UsageError

OBJECTS = {  # images in each of the two private splits, per object (2,045 in all)
    "can": 321,
    "fabric": 314,
    "fruit_jelly": 255,
    "rice": 277,
    "sheet_metal": 142,
    "vial": 276,
    "wallplugs": 232,
    "walnuts": 228,
}
SPLITS = {"test_private": "regular", "test_private_mixed": "mixed"}


SCENARIOS = tuple(OBJECTS)


def arrange(scenario: Path, out: Path) -> dict[str, int]:
    """An unpacked MVTec AD 2 scenario in the project's layout, moved (not copied) into the empty ``out``.

    test_public is the test split with masks (``test/{good,bad}``, ``ground_truth/bad/<stem>_mask.png``);
    validation/good (good pictures only) stays for the thresholds; the private splits stay as they
    are, for the submission. One line naming the folder when a split is missing.
    """
    fix = "unpack the scenario again from mvtec_ad_2.tar.gz"

    def _images(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else []

    for split in ("train/good", f"{VALIDATION}/good", "test_public/good", "test_public/bad", *SPLITS):
        if not (scenario / split).is_dir():
            raise UsageError(f"{scenario / split}: missing; an MVTec AD 2 scenario holds it; {fix}")
    for image in _images(scenario / "test_public/bad"):
        check_regular(
            scenario / "test_public/ground_truth/bad" / f"{image.stem}_mask.png", f"the mask of {image}; {fix}"
        )
    moves = {
        "train": "train",
        VALIDATION: VALIDATION,
        "test_public/good": "test/good",
        "test_public/bad": "test/bad",
        "test_public/ground_truth": "ground_truth",
        **{split: split for split in SPLITS},
    }
    for source, target in moves.items():
        (out / target).parent.mkdir(parents=True, exist_ok=True)
        (scenario / source).rename(out / target)
    return {
        "train_good": len(_images(out / "train/good")),
        "validation_good": len(_images(out / VALIDATION / "good")),
        "test_good": len(_images(out / "test/good")),
        "test_defective": len(_images(out / "test/bad")),
        **{split: len(_images(out / split)) for split in SPLITS},
    }
