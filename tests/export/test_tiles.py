"""The input geometries of the copyable runtime (views, stitch), against what they promise, stated here on their own:

- tiles cover every pixel of the scaled image, neighbours share at least the overlap, no window leaves the image, and
  no fewer windows could do it;
- the whole image keeps its aspect ratio, fills the input on its longer side and sits centred in it;
- the stitched map is, at every pixel, the feathered average of the tiles' maps taken back as scipy's interpolation
  takes them, with weights the distance to each window's nearer edge; one view is exactly ``to_original``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from patchcore.runtime import patchcore_onnx as runtime

from reference_geometry import map_back


def _tiles(scale: float = 1.0, overlap: int = 16) -> dict:
    return {"name": "tiles", "scale": scale, "overlap": overlap}


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 3000),
    height=st.integers(1, 3000),
    crop=st.integers(32, 300),
    share=st.floats(0.0, 0.5),
    scale=st.floats(0.05, 2.0),
)
def test_tiles_cover_every_pixel_with_the_overlap_and_no_more_tiles(width, height, crop, share, scale):
    overlap = int(crop * share)
    cut = runtime.views(width, height, _tiles(scale, overlap), crop, crop)
    w, h = cut[0].width, cut[0].height
    assert all((v.width, v.height) == (w, h) for v in cut)
    assert min(w, h) >= crop  # an image smaller than a tile is enlarged until it fills one
    if min(round(width * scale), round(height * scale)) >= crop:
        assert abs(w - width * scale) <= 1 and abs(h - height * scale) <= 1
    covered = np.zeros((h, w), dtype=np.int32)
    for v in cut:
        assert 0 <= v.left and v.left + crop <= w and 0 <= v.top and v.top + crop <= h
        covered[v.top : v.top + crop, v.left : v.left + crop] += 1
    assert covered.min() >= 1
    for axis, length in ((0, w), (1, h)):
        starts = sorted({(v.left, v.top)[axis] for v in cut})
        # neighbours share at least the overlap, and one window fewer could not span the side with it
        assert all(b - a <= crop - overlap for a, b in zip(starts, starts[1:]))
        n = len(starts)
        assert n == 1 or (n - 1) * (crop - overlap) + overlap < length
    assert len(cut) == len({(v.left, v.top) for v in cut})


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 5000), height=st.integers(1, 5000), crop=st.integers(32, 400))
def test_the_whole_image_fills_the_input_on_its_longer_side_centred(width, height, crop):
    (v,) = runtime.views(width, height, {"name": "whole"}, crop, crop)
    assert max(v.width, v.height) == crop
    x0, y0, x1, y1 = v.box()
    assert 0 <= x0 and 0 <= y0 and x1 <= crop and y1 <= crop  # nothing of the image falls outside the input
    assert abs(x0 - (crop - x1)) <= 1 and abs(y0 - (crop - y1)) <= 1  # centred
    # each side in proportion to the longer one, to the nearest pixel (at least one)
    long = max(width, height)
    assert abs(v.width - max(width * crop / long, 1)) <= 0.5 and abs(v.height - max(height * crop / long, 1)) <= 0.5


def test_whole_pads_with_black_and_keeps_every_pixel():
    from PIL import Image

    image = Image.new("RGB", (300, 100), (200, 150, 100))
    cut = runtime.views(300, 100, {"name": "whole"}, 64, 60)
    (pixels,) = runtime.view_pixels(image, cut, 60)
    x0, y0, x1, y1 = (int(round(c)) for c in cut[0].box())
    assert (x0, x1) == (0, 60) and y1 - y0 == 20
    assert (pixels[y0:y1] == (200, 150, 100)).all() and (pixels[:y0] == 0).all() and (pixels[y1:] == 0).all()


def _feathered(maps, boxes, size):
    """The stitch as defined: each view's map taken back by scipy (0 outside it), weighted at each output pixel by its
    centre's distance to the view window's nearer edge (in the window's pixels), divided by the weights' sum."""
    height, width = size
    total, weight = np.zeros(size), np.zeros(size)
    for amap, (x0, y0, x1, y1) in zip(maps, boxes):
        side = amap.shape[0]
        v = y0 + (np.arange(height) + 0.5) * (y1 - y0) / height
        u = x0 + (np.arange(width) + 0.5) * (x1 - x0) / width
        inside = ((v >= 0) & (v < side))[:, None] & ((u >= 0) & (u < side))[None, :]
        fv, fu = np.maximum(np.minimum(v, side - v), 1e-3), np.maximum(np.minimum(u, side - u), 1e-3)
        w = np.where(inside, fv[:, None] * fu[None, :], 0.0)
        total += w * map_back(amap, (x0, y0, x1, y1), size)
        weight += w
    return np.divide(total, weight, out=np.zeros(size), where=weight > 0)


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(40, 400),
    height=st.integers(40, 400),
    crop=st.integers(32, 96),
    share=st.floats(0.0, 0.5),
    scale=st.floats(0.3, 1.5),
    seed=st.integers(0, 2**16),
)
def test_the_stitched_map_is_the_feathered_average_of_the_tiles(width, height, crop, share, scale, seed):
    cut = runtime.views(width, height, _tiles(scale, int(crop * share)), crop, crop)
    maps = np.random.default_rng(seed).random((len(cut), crop, crop)).astype(np.float32)
    boxes = [v.box() for v in cut]
    got = runtime.stitch(maps, boxes, (height, width))
    assert got.shape == (height, width) and got.dtype == np.float32
    assert np.allclose(got, _feathered(maps, boxes, (height, width)), atol=1e-5)


def test_one_view_is_exactly_the_map_taken_back():
    amap = np.random.default_rng(0).random((60, 60)).astype(np.float32)
    (view,) = runtime.views(170, 90, {}, 64, 60)
    assert np.array_equal(
        runtime.stitch(amap[None], [view.box()], (90, 170)), runtime.to_original(amap, view.box(), (90, 170))
    )


def test_tiles_of_one_smooth_picture_stitch_without_seams():
    """Each tile's map is a smooth picture of the original seen through that tile: the stitch gives the picture back,
    and where tiles disagree (one tile off by a constant) the value moves smoothly across the overlap, never in a
    step at a tile's edge."""
    width, height, crop = 500, 300, 64
    cut = runtime.views(width, height, _tiles(1.0, 24), crop, crop)
    centres = np.arange(crop) + 0.5

    def seen(view, offset=0.0):
        y = view.top + centres  # scale 1: a tile's pixel is the original's
        x = view.left + centres
        return (np.sin(y / 40.0)[:, None] + np.cos(x / 55.0)[None, :] + offset).astype(np.float32)

    truth = np.sin((np.arange(height) + 0.5) / 40.0)[:, None] + np.cos((np.arange(width) + 0.5) / 55.0)[None, :]
    boxes = [v.box() for v in cut]
    got = runtime.stitch(np.stack([seen(v) for v in cut]), boxes, (height, width))
    assert np.abs(got - truth).max() < 1e-5
    odd = len(cut) // 2
    shifted = runtime.stitch(
        np.stack([seen(v, 1.0 if i == odd else 0.0) for i, v in enumerate(cut)]), boxes, (height, width)
    )
    step = np.abs(np.diff(shifted - truth, axis=1)).max()
    assert step < 0.2, step  # a plain average would jump by up to 1/2 where the shifted tile's window ends


def test_a_tiled_image_scores_as_its_input_holding_its_highest_patch():
    """image_scores over inputs: the input holding the image's highest patch gives the image's score."""
    scores = np.array([1.0, 5.0, 3.0, 2.0, 2.5])
    highest = np.array([4.0, 9.0, 9.0, 1.0, 3.0])  # a tie (9, 9): the first input holding it
    assert runtime.image_scores(scores, highest, [3, 2]).tolist() == [5.0, 2.5]
    assert runtime.image_scores(scores, None, [1] * 5).tolist() == scores.tolist()
