"""Build the "hazelnut_surface" benchmark: crops of real hazelnut surface with pasted real defects.

    python bench/make_surface.py [--out data/bundled/hazelnut_surface.tar.gz]
    python bench/make_surface.py --good-only [--out data/bundled/hazelnut_surface_good.tar.gz]

The bundled Hazelnut Toy photos (CC-BY-4.0, Intel/anomalib) are easy: blue paint on a pale nut
against a plain yellow background. This set turns the same photos into a texture task, where
the surface fills the whole image (so border patches matter) and the defects are subtle:

- train/good: 96 x 96 px crops lying wholly on the nut, up to four per training photo and
  view (the photo and its mirror image);
- test/good: up to four crops of each of the six good test photos in each of four orientations;
- test/pasted: every other of those crops with a square of another nut's surface (10 to 22 px,
  turned and re-lit by up to 20%) pasted in; test/scratch: the rest with a thin band of it;
  the masks are the pasted pixels, exactly. NOTICE.md in the archive gives the counts.

--good-only writes "hazelnut_surface_good": the same train/good and test/good crops and
nothing else, the cold start of a line that has not seen a defect yet.

Everything is seeded, so the archive is rebuilt byte for byte. No test photo appears in train/,
and the pasted pieces come from training photos only.
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
CROP = 96
NAME = "hazelnut_surface"
NOTICE = """# Hazelnut Surface (derived from Hazelnut Toy)

96 x 96 px crops of real hazelnut surface, with pasted pieces of other hazelnuts' surfaces
as defects, in the MVTec AD layout: {counts}, and an exact mask per defect image in
ground_truth/<defect>/<stem>.png.
Built by bench/make_surface.py from the bundled Hazelnut Toy subset.

Origin of every pixel: the "Hazelnut Toy" data set published by Intel with anomalib, under the
Creative Commons Attribution 4.0 International license (CC-BY-4.0); see the Hazelnut Toy
NOTICE.md. This derived set is under the same license. Changes: mirrored, rotated and cropped
copies; pasted crops of other photos.
"""
GOOD_NOTICE = """# Hazelnut Surface, good images only (derived from Hazelnut Toy)

The good 96 x 96 px crops of real hazelnut surface of hazelnut_surface, in the MVTec AD layout:
{counts}; no defect images and no masks. A category for the cold start: a model made from
good parts alone, as on a new line that has not collected defects yet.
Built by bench/make_surface.py --good-only from the bundled Hazelnut Toy subset.

Origin of every pixel: the "Hazelnut Toy" data set published by Intel with anomalib, under the
Creative Commons Attribution 4.0 International license (CC-BY-4.0); see the Hazelnut Toy
NOTICE.md. This derived set is under the same license. Changes: mirrored, rotated and cropped
copies.
"""


def _read(tar: tarfile.TarFile, prefix: str) -> list[tuple[str, np.ndarray]]:
    members = sorted(
        (m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix) and m.name.endswith(".jpg")),
        key=lambda m: m.name,
    )
    out = []
    for m in members:
        data = tar.extractfile(m)
        assert data is not None
        with Image.open(io.BytesIO(data.read())) as im:
            out.append((Path(m.name).stem, np.asarray(im.convert("RGB").resize((512, 512)))))
    return out


def _inside(image: np.ndarray, side: int) -> np.ndarray:
    """Top-left corners (y, x) of side x side squares that lie wholly on the nut.

    The pale nut has low saturation against the saturated yellow background; a square fits
    where the distance to the background is at least half its diagonal.
    """
    rgb = image.astype(np.float32)
    saturation = (rgb.max(axis=2) - rgb.min(axis=2)) / np.maximum(rgb.max(axis=2), 1.0)
    centres = np.argwhere(distance_transform_edt(saturation < 0.5) > side * 0.71 + 1)
    return centres - side // 2


def _views(image: np.ndarray) -> list[np.ndarray]:
    return [image, image[:, ::-1], image[::-1], image[::-1, ::-1]]


def _crops(image: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    corners = _inside(image, CROP)
    if len(corners) == 0:
        return []
    picks = corners[rng.choice(len(corners), size=min(n, len(corners)), replace=False)]
    return [np.ascontiguousarray(image[y : y + CROP, x : x + CROP]) for y, x in sorted(map(tuple, picks))]


def _piece(donors: list[np.ndarray], size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A piece of a training nut's surface, turned and re-lit."""
    corners: np.ndarray = np.zeros((0, 2), dtype=np.int64)
    while len(corners) == 0:  # a photo whose nut is too small for the piece is passed over
        donor = donors[int(rng.integers(len(donors)))]
        corners = _inside(donor, max(size))
    y, x = corners[int(rng.integers(len(corners)))]
    piece = donor[y : y + size[0], x : x + size[1]].astype(np.float32)
    piece = np.rot90(piece, int(rng.integers(1, 4))) if size[0] == size[1] else piece[::-1, ::-1]
    return np.clip(piece * rng.uniform(0.8, 1.2), 0, 255)


def _paste(
    crop: np.ndarray, donors: list[np.ndarray], kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if kind == "pasted":
        s = int(rng.integers(10, 23))
        size = (s, s)
    else:
        size = (int(rng.integers(3, 6)), int(rng.integers(24, 49)))
    y, x = int(rng.integers(0, CROP - size[0] + 1)), int(rng.integers(0, CROP - size[1] + 1))
    out = crop.astype(np.float32).copy()
    out[y : y + size[0], x : x + size[1]] = _piece(donors, size, rng)
    mask = np.zeros((CROP, CROP), dtype=np.uint8)
    mask[y : y + size[0], x : x + size[1]] = 255
    return out.astype(np.uint8), mask


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _files(seed: int) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    with tarfile.open(SOURCE) as src:
        train = _read(src, "hazelnut_toy/train/good/")
        good = _read(src, "hazelnut_toy/test/good/")
    donors = [image for _, image in train]
    files: dict[str, bytes] = {}
    for stem, image in train:
        for v, view in enumerate(_views(image)[:2]):
            for c, crop in enumerate(_crops(view, 4, rng)):
                files[f"{NAME}/train/good/{stem}_{v}{c}.jpg"] = _encode(crop, "JPEG")
    for stem, image in good:
        for v, view in enumerate(_views(image)):
            for c, crop in enumerate(_crops(view, 4, rng)):
                name = f"{stem}_{v}{c}"
                files[f"{NAME}/test/good/{name}.jpg"] = _encode(crop, "JPEG")
                kind = ("pasted", "scratch")[c % 2]
                defect, mask = _paste(crop, donors, kind, rng)
                files[f"{NAME}/test/{kind}/{name}.jpg"] = _encode(defect, "JPEG")
                files[f"{NAME}/ground_truth/{kind}/{name}.png"] = _encode(mask, "PNG")
    folders = sorted(
        {name.rsplit("/", 1)[0].removeprefix(f"{NAME}/") for name in files if "/ground_truth/" not in name}
    )
    counts = ", ".join(
        f"{folder} {sum(1 for n in files if n.rsplit('/', 1)[0] == f'{NAME}/{folder}')}" for folder in folders
    )
    files[f"{NAME}/NOTICE.md"] = NOTICE.format(counts=counts).encode()
    return files


def good_only(files: dict[str, bytes]) -> dict[str, bytes]:
    """The good images alone under their own category name, with a NOTICE saying so."""
    name = f"{NAME}_good"
    kept = {
        f"{name}/{n.removeprefix(NAME + '/')}": data
        for n, data in files.items()
        if n.startswith((f"{NAME}/train/good/", f"{NAME}/test/good/"))
    }
    counts = ", ".join(
        f"{folder} {sum(1 for n in kept if n.startswith(f'{name}/{folder}/'))}"
        for folder in ("train/good", "test/good")
    )
    kept[f"{name}/NOTICE.md"] = GOOD_NOTICE.format(counts=counts).encode()
    return kept


def build(out: Path, seed: int = 0, only_good: bool = False) -> str:
    files = good_only(_files(seed)) if only_good else _files(seed)
    return pack(files, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--good-only", action="store_true", help="train/good and test/good only, as hazelnut_surface_good"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.out = args.out or REPO / "data" / "bundled" / f"{NAME}{'_good' if args.good_only else ''}.tar.gz"
    digest = build(args.out, only_good=args.good_only)
    print(f"{args.out}: sha256 {digest} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
