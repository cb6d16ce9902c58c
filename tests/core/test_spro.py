"""AU-sPRO (MVTec LOCO AD) against a statement of its definition written here from the owners' evaluation code."""

import numpy as np
import pytest

from patchcore.core.spro import au_spro
from patchcore.datasets.loco import saturation_area


def reference_au_spro(maps, defects, good_masks, max_fpr):
    """defects: (image index, mask, saturation pixels); thresholds: every score, 'above' strictly, as the owners' code."""
    scores = np.unique(np.concatenate([m.ravel() for m in maps]))
    cuts = np.r_[scores.min() - 1.0, scores]  # below everything, then each value
    negatives = [~g for g in good_masks]  # outside every defect of the image
    points = []
    for t in cuts:
        fp = sum(int(((m > t) & n).sum()) for m, n in zip(maps, negatives))
        fpr = fp / sum(int(n.sum()) for n in negatives)
        spros = [min(int(((maps[i] > t) & mask).sum()) / sat, 1.0) for i, mask, sat in defects]
        points.append((fpr, float(np.mean(spros))))
    points = sorted(set(points))
    xs, ys = [0.0], [0.0]
    for x, y in points:
        if x > 0 or y > 0:
            xs.append(x)
            ys.append(y)
    area = 0.0
    for k in range(1, len(xs)):
        x0, y0, x1, y1 = xs[k - 1], ys[k - 1], xs[k], ys[k]
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:  # cut the last segment at the limit
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            x1 = max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    if xs[-1] < max_fpr:
        area += (max_fpr - xs[-1]) * ys[-1]
    return area / max_fpr


@pytest.fixture
def scene():
    rng = np.random.default_rng(3)
    maps = [rng.integers(0, 40, size=(12, 12)).astype(np.float32) for _ in range(3)]
    big = np.zeros((12, 12), bool)
    big[2:8, 2:8] = True  # 36 pixels: a missing part, found once 10 of them are flagged
    small = np.zeros((12, 12), bool)
    small[9:11, 9:12] = True  # 6 pixels, relative saturation 0.5: 3 pixels
    other = np.zeros((12, 12), bool)
    other[0:3, 5:10] = True  # image 1: 15 pixels, absolute 40 (capped at its area)
    maps[0][big] += 15
    maps[1][other] += 5
    defects = [
        (0, big, saturation_area(36, 10, False)),
        (0, small, saturation_area(6, 0.5, True)),
        (1, other, saturation_area(15, 40, False)),
    ]
    union = [big | small, other, np.zeros((12, 12), bool)]
    return maps, defects, union


def per_image(defects, n=3):
    return [[(mask, sat) for j, mask, sat in defects if j == i] for i in range(n)]


@pytest.mark.parametrize("max_fpr", [0.05, 0.3, 1.0])
def test_au_spro_is_the_owners_definition(scene, max_fpr):
    maps, defects, union = scene
    got = au_spro(maps, per_image(defects), max_fpr)
    assert got == pytest.approx(reference_au_spro(maps, defects, union, max_fpr), abs=1e-9)


def test_ties_and_overlapping_defects_still_saturate_exactly():
    rng = np.random.default_rng(5)
    maps = [rng.integers(0, 4, size=(10, 10)).astype(np.float32) for _ in range(2)]  # many ties
    a = np.zeros((10, 10), bool)
    a[1:6, 1:6] = True
    b = np.zeros((10, 10), bool)
    b[4:8, 4:8] = True  # overlaps a
    defects = [(0, a, 7), (0, b, 16), (1, b, 3)]
    union = [a | b, b]
    for limit in (0.05, 0.3):
        got = au_spro(maps, per_image(defects, 2), limit)
        assert got == pytest.approx(reference_au_spro(maps, defects, union, limit), abs=1e-9)


def test_plausible_wrong_definitions_give_other_numbers(scene):
    maps, defects, union = scene
    right = au_spro(maps, per_image(defects), 0.05)
    # without saturation: plain PRO over each defect's whole area
    unsaturated = [(i, mask, int(mask.sum())) for i, mask, _ in defects]
    assert abs(right - reference_au_spro(maps, unsaturated, union, 0.05)) > 1e-3
    # an absolute threshold not capped at the defect's area: image 1's 15-pixel defect would need 40 pixels found
    uncapped = [(i, mask, 40 if i == 1 else s) for i, mask, s in defects]
    assert abs(au_spro(maps, per_image(defects), 0.3) - au_spro(maps, per_image(uncapped), 0.3)) > 1e-3
    # averaged per image first (image 0 holds two defects, image 1 one), not over every defect alike
    first = au_spro(maps[:1], per_image(defects, 1)[:1], 0.05)
    second = au_spro(maps[1:2], [per_image(defects)[1]], 0.05)
    assert abs(right - (first + second) / 2) > 1e-3


def test_saturation_areas():
    assert saturation_area(100, 30, relative=False) == 30
    assert saturation_area(20, 30, relative=False) == 20  # capped at the defect's area
    assert saturation_area(7, 0.5, relative=True) == 3  # int(), as the owners' code
    with pytest.raises(ValueError, match="at least one pixel"):
        au_spro([np.zeros((2, 2))], [[(np.ones((2, 2), bool), 0)]])
