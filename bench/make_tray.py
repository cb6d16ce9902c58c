"""Build the "hazelnut_tray" benchmark: large, non-square pictures of many nuts with small defects.

    python bench/make_tray.py [--out data/bundled/hazelnut_tray.tar.gz]

What a line camera sees, made from the bundled Hazelnut Toy photos (CC-BY-4.0, Intel/anomalib):
a tray of eight nuts, 2048 x 1024 px (2.1 megapixels, 2:1), each cell a photo turned or
mirrored. The defects are small, as on a real line (each at most 0.1% of the picture):

- test/paint: a disc of real paint (cut from a painted Hazelnut Toy test photo, 16 to 30 px
  across) on one nut, in any of the eight cells, so half of them lie in the outer columns
  that a centre crop of the picture drops;
- test/fragment: a square piece of another nut's surface (20 to 40 px) lying on the tray,
  touching the picture's border;
- train/good and test/good: trays without a defect; the masks are the pasted pixels, exactly.

Everything is seeded, so the archive is rebuilt byte for byte. No test photo appears in train/;
the fragments come from training photos, the paint from painted test photos.
"""

from __future__ import annotations

import argparse
import io
import tarfile
from pathlib import Path

import numpy as np
from archives import pack
from PIL import Image
from scipy.ndimage import distance_transform_edt

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "data" / "bundled" / "hazelnut_toy.tar.gz"
NAME = "hazelnut_tray"
CELL, COLUMNS, ROWS = 512, 4, 2
COUNTS = {"train/good": 16, "test/good": 8, "test/paint": 8, "test/fragment": 8}
NOTICE = """# Hazelnut Tray (derived from Hazelnut Toy)

Pictures of a tray of eight hazelnuts, 2048 x 1024 px (2.1 megapixels), with small defects
(each at most 0.1% of the picture; the fragments touch its border), in the MVTec AD layout:
{counts}, and an exact mask per defect image in ground_truth/<defect>/<stem>.png.
Built by bench/make_tray.py from the bundled Hazelnut Toy subset.

Origin of every pixel: the "Hazelnut Toy" data set published by Intel with anomalib, under the
Creative Commons Attribution 4.0 International license (CC-BY-4.0); see the Hazelnut Toy
NOTICE.md. This derived set is under the same license. Changes: rotated and mirrored copies
tiled eight to a picture; pasted discs of painted photos and squares of other photos.
"""


def _read(tar: tarfile.TarFile, prefix: str, suffix: str = ".jpg") -> dict[str, np.ndarray]:
    members = sorted(
        (m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix) and m.name.endswith(suffix)),
        key=lambda m: m.name,
    )
    out = {}
    for m in members:
        data = tar.extractfile(m)
        assert data is not None
        with Image.open(io.BytesIO(data.read())) as im:
            out[Path(m.name).stem] = np.asarray(im.convert("RGB").resize((CELL, CELL)))
    return out


def _turned(image: np.ndarray, k: int) -> np.ndarray:
    """One of the eight turns and mirror images of a photo."""
    return np.rot90(image[:, ::-1] if k >= 4 else image, k % 4)


def _tray(photos: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    picks = rng.choice(len(photos), size=COLUMNS * ROWS, replace=len(photos) < COLUMNS * ROWS)
    cells = [_turned(photos[int(i)], int(rng.integers(8))) for i in picks]
    rows = [np.concatenate(cells[r * COLUMNS : (r + 1) * COLUMNS], axis=1) for r in range(ROWS)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0))


def _background(image: np.ndarray) -> np.ndarray:
    """The saturated yellow tray around the pale nuts."""
    rgb = image.astype(np.float32)
    return (rgb.max(axis=2) - rgb.min(axis=2)) / np.maximum(rgb.max(axis=2), 1.0) >= 0.5


def _paint(tray: np.ndarray, painted: list[tuple[np.ndarray, np.ndarray]], rng) -> tuple[np.ndarray, np.ndarray]:
    """A disc of real paint on a nut: cut where a painted photo's mask holds the whole disc."""
    radius = int(rng.integers(8, 16))
    photo, mask = painted[int(rng.integers(len(painted)))]
    centres = np.argwhere(distance_transform_edt(mask) > radius + 1)
    while len(centres) == 0:
        photo, mask = painted[int(rng.integers(len(painted)))]
        centres = np.argwhere(distance_transform_edt(mask) > radius + 1)
    cy, cx = centres[int(rng.integers(len(centres)))]
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = yy**2 + xx**2 <= radius**2
    spots = np.argwhere(distance_transform_edt(~_background(tray)) > radius + 2)  # on a nut, clear of the tray
    ty, tx = spots[int(rng.integers(len(spots)))]
    out, where = tray.copy(), np.zeros(tray.shape[:2], dtype=bool)
    window = (slice(ty - radius, ty + radius + 1), slice(tx - radius, tx + radius + 1))
    source = photo[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1]
    out[window][disc] = source[disc]
    where[window] = disc
    return out, where


def _fragment(tray: np.ndarray, donors: list[np.ndarray], rng) -> tuple[np.ndarray, np.ndarray]:
    """A square of a training nut's surface on the tray, touching the picture's border."""
    side = int(rng.integers(20, 41))
    donor = donors[int(rng.integers(len(donors)))]
    inside = np.argwhere(distance_transform_edt(~_background(donor)) > side * 0.71 + 1) - side // 2
    y, x = inside[int(rng.integers(len(inside)))]
    piece = np.rot90(donor[y : y + side, x : x + side], int(rng.integers(4)))
    height, width = tray.shape[:2]
    edge = int(rng.integers(4))  # left, right, top, bottom
    along = int(rng.integers(0, (height if edge < 2 else width) - side + 1))
    top, left = [(along, 0), (along, width - side), (0, along), (height - side, along)][edge]
    out, where = tray.copy(), np.zeros(tray.shape[:2], dtype=bool)
    out[top : top + side, left : left + side] = np.clip(piece.astype(np.float32) * rng.uniform(0.85, 1.15), 0, 255)
    where[top : top + side, left : left + side] = True
    return out, where


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _files(seed: int) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    with tarfile.open(SOURCE) as src:
        train = list(_read(src, "hazelnut_toy/train/good/").values())
        good = list(_read(src, "hazelnut_toy/test/good/").values())
        colour = _read(src, "hazelnut_toy/test/colour/")
        masks = _read(src, "hazelnut_toy/ground_truth/colour/", ".png")
    painted = [(colour[stem], masks[stem].any(axis=2)) for stem in sorted(colour)]
    files: dict[str, bytes] = {}
    limit = CELL * CELL * COLUMNS * ROWS // 1000  # 0.1% of the picture
    for folder, count in COUNTS.items():
        for i in range(count):
            tray = _tray(train if folder == "train/good" else good, rng)
            if folder in ("test/paint", "test/fragment"):
                kind = folder.split("/")[1]
                tray, mask = _paint(tray, painted, rng) if kind == "paint" else _fragment(tray, train, rng)
                assert 0 < mask.sum() <= limit, (folder, int(mask.sum()))
                files[f"{NAME}/ground_truth/{kind}/{i:03d}.png"] = _encode(mask.astype(np.uint8) * 255, "PNG")
            files[f"{NAME}/{folder}/{i:03d}.jpg"] = _encode(tray, "JPEG")
    counts = ", ".join(f"`{folder}` {count}" for folder, count in COUNTS.items())
    files[f"{NAME}/NOTICE.md"] = NOTICE.format(counts=counts).encode()
    return files


def build(out: Path, seed: int = 0) -> str:
    files = _files(seed)
    return pack(files, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "data" / "bundled" / f"{NAME}.tar.gz")
    args = parser.parse_args()
    digest = build(args.out)
    print(f"{args.out}: sha256 {digest} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
