"""A synthetic data set of MVTec AD's size and layout, painted on the fly (no download).

Per category: ``train`` good images and ``test`` images (about a third good, the rest with
painted defects and their exact masks), PNG files of ``size`` x ``size`` pixels as MVTec's
are. Each category has its own colour and texture scale; each image is a smooth random
surface with grain, so the network sees structure, and PNG decoding costs what it costs on
real photos of that size. Written in parallel processes; the same seed gives the same files.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

MVTEC_TRAIN, MVTEC_TEST, MVTEC_SIZE, MVTEC_CATEGORIES = 240, 115, 900, 15


@functools.cache
def _grain(size: int) -> np.ndarray:
    # one grain tile per process, shifted per image: drawing fresh noise would cost more than the PNG
    return np.random.default_rng(size).standard_normal((2 * size, 2 * size, 1), dtype=np.float32) * 6.0


def _surface(rng: np.random.Generator, size: int, colour: np.ndarray, scale: int) -> np.ndarray:
    coarse = rng.standard_normal((scale, scale, 3)).astype(np.float32)
    smooth = np.stack(
        [np.asarray(Image.fromarray(coarse[..., c]).resize((size, size), Image.Resampling.BICUBIC)) for c in range(3)],
        axis=-1,
    )
    dy, dx = (int(v) for v in rng.integers(0, size, 2))
    grain = _grain(size)[dy : dy + size, dx : dx + size]
    return np.clip(colour + 18.0 * smooth + grain, 0, 255).astype(np.uint8)


def _paint_defects(rng: np.random.Generator, image: Image.Image, size: int) -> Image.Image:
    """Paint 1-3 blobs or strokes of another colour; return the mask (0/255) of what was painted."""
    mask = Image.new("L", (size, size), 0)
    draw, mark = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 4))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = (int(v) for v in rng.integers(size // 8, size - size // 8, 2))
        r = int(rng.integers(size // 60, size // 15))
        if rng.random() < 0.5:
            box = (x - r, y - r // 2, x + r, y + r // 2)
            draw.ellipse(box, fill=colour)
            mark.ellipse(box, fill=255)
        else:
            end = (x + int(rng.integers(-4 * r, 4 * r)), y + int(rng.integers(-4 * r, 4 * r)))
            draw.line([(x, y), end], fill=colour, width=max(2, r // 3))
            mark.line([(x, y), end], fill=255, width=max(2, r // 3))
    return mask


def _write(job: tuple[str, int, int, int, str, int]) -> None:
    folder, category, index, size, kind, seed = job
    rng = np.random.default_rng([seed, category, index, kind == "train"])
    hue = np.random.default_rng([seed, category]).uniform(40, 215, 3).astype(np.float32)
    scale = 6 + 3 * (category % 5)
    image = Image.fromarray(_surface(rng, size, hue, scale))
    root = Path(folder)
    if kind == "defect":
        mask = _paint_defects(rng, image, size)
        mask.save(root / "ground_truth" / "paint" / f"{index:03d}_mask.png")
        image.save(root / "test" / "paint" / f"{index:03d}.png", compress_level=1)
    else:
        # zlib level 1: a quarter of the default's encoding time, about the same file and decoding cost
        image.save(root / ("train/good" if kind == "train" else "test/good") / f"{index:03d}.png", compress_level=1)


def build(
    data_root: Path, categories: int, n_train: int, n_test: int, size: int, seed: int = 0, workers: int | None = None
) -> list[str]:
    """Write ``categories`` categories under ``data_root``; return their names."""
    names = [f"synthetic_{c:02d}" for c in range(categories)]
    jobs = []
    n_good = max(1, n_test // 3)
    for c, name in enumerate(names):
        root = data_root / name
        for sub in ("train/good", "test/good", "test/paint", "ground_truth/paint"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        jobs += [(str(root), c, i, size, "train", seed) for i in range(n_train)]
        jobs += [(str(root), c, i, size, "good", seed) for i in range(n_good)]
        jobs += [(str(root), c, i, size, "defect", seed) for i in range(n_good, max(n_test, n_good + 1))]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        list(pool.map(_write, jobs, chunksize=8))
    return names
