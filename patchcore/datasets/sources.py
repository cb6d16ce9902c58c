"""Where each data set comes from: the bundled sample, MVTec AD, a URL, a local archive or folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from patchcore.config import DatasetSpec
from patchcore.datasets import loco, mvtec_ad2, visa
from patchcore.errors import UsageError


@dataclass(frozen=True)
class BundledArchive:
    location: str  # relative to the project root, where dvc runs the stage
    sha256: str


# Real photographs shipped inside the repository so that `dvc repro` works offline.
BUNDLED = {
    "hazelnut_toy": BundledArchive(
        "data/bundled/hazelnut_toy.tar.gz", "1c2ce50eb1035229f88e8beb5eaf7f664c02e8ba0deba162a9f1551c023528fb"
    ),
    # crops of the same photos' nut surface with subtle pasted defects and exact masks (bench/make_surface.py)
    "hazelnut_surface": BundledArchive(
        "data/bundled/hazelnut_surface.tar.gz", "7cb9172ec1b73d2de8fac15d5cb2959fca04af9da96da9a9f30d0c98877f8e0f"
    ),
    # the same crops' good images alone (train + test/good): the cold start (bench/make_surface.py --good-only)
    "hazelnut_surface_good": BundledArchive(
        "data/bundled/hazelnut_surface_good.tar.gz", "edee8d8984e748f7a1b73a051d88a7d62b4f29fca205fd969efef3748242f387"
    ),
    # trays of eight nuts, 2048 x 1024 px, with small defects, some at the border (bench/make_tray.py)
    "hazelnut_tray": BundledArchive(
        "data/bundled/hazelnut_tray.tar.gz", "6dcdd19ea033add43c1104030d9f3d4fb0c853b1d2909a357914d621263b9a72"
    ),
}


@dataclass(frozen=True)
class MVTecCategory:
    share: str  # the current per-category share, "<number>/<key>"
    archive_id: str
    train_good: int
    test_good: int
    test_defective: int
    defect_types: int
    older_id: str  # the id of the oldest set of links


# Bergmann et al., CVPR 2019. CC BY-NC-SA 4.0: downloaded by each user, never shipped here.
# MVTec moves these links without notice: every item keeps the links known to have served it,
# current first, and the download tries them in order (download.<name>.urls overrides them).
# .github/workflows/links.yml checks every one monthly ('patchcore check-links').
_HOST = "https://www.mydrive.ch/shares"
MVTEC_FULL_NAME = "mvtec_anomaly_detection.tar.xz"
MVTEC_FULL_URLS = (
    f"{_HOST}/150996/b52ecdcbf521176e9db9c731f2304b27/download/420938113-1629960298/{MVTEC_FULL_NAME}",
    f"{_HOST}/38536/3830184030e49fe74747669442f0f282/download/420938113-1629952094/{MVTEC_FULL_NAME}",
)
MVTEC_FULL_SHA256 = "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d"
_OLDER_SHARE = "38536/3830184030e49fe74747669442f0f283"  # same ids as the current links
_OLDEST_SHARE = "38536/3830184030e49fe74747669442f0f282"
_OLDEST_PILL_SHARE = "43421/11a215a5749fcfb75e331ddd5f8e43ee"
MVTEC = {
    "bottle": MVTecCategory(
        "150452/132a93367fb17cdf968dfb5c4013f6e7", "420937370-1629958698", 209, 20, 63, 3, "420937370-1629951468"
    ),
    "cable": MVTecCategory(
        "150453/10f960e07fec2838b2cd512586633a32", "420937413-1629958794", 224, 58, 92, 8, "420937413-1629951498"
    ),
    "capsule": MVTecCategory(
        "150454/e0ce6dd74eb150f46c0d98131b3703f2", "420937454-1629958872", 219, 23, 109, 5, "420937454-1629951595"
    ),
    "carpet": MVTecCategory(
        "150455/eac7fbce84d93a5094e13f391170eca4", "420937484-1629959013", 280, 28, 89, 5, "420937484-1629951672"
    ),
    "grid": MVTecCategory(
        "150456/bb0b2e3dc804ccb8b4485e01f8e4493b", "420937487-1629959044", 264, 21, 57, 5, "420937487-1629951814"
    ),
    "hazelnut": MVTecCategory(
        "150457/51d49f65e84bdc100ff8035d7dd783ea", "420937545-1629959162", 391, 40, 70, 4, "420937545-1629951845"
    ),
    "leather": MVTecCategory(
        "150458/923030ce14e10a7d147e95d0f8885f6b", "420937607-1629959262", 245, 32, 92, 5, "420937607-1629951964"
    ),
    "metal_nut": MVTecCategory(
        "150459/c68856a21dca589b0f8ff6d4ee0f18f4", "420937637-1629959294", 220, 22, 93, 4, "420937637-1629952063"
    ),
    "pill": MVTecCategory(
        "150460/d4f1c04da67034ccc8d8b5fa3e73f244", "420938129-1629960351", 267, 26, 141, 7, "420938129-1629953099"
    ),
    "screw": MVTecCategory(
        "150461/242f454cc6385e5693c4fd4b94567d1e", "420938130-1629960389", 320, 41, 119, 5, "420938130-1629953152"
    ),
    "tile": MVTecCategory(
        "150462/5479f0fdc97bc6fa16eab0cb0cf0109f", "420938133-1629960456", 230, 33, 84, 5, "420938133-1629953189"
    ),
    "toothbrush": MVTecCategory(
        "150463/895a1a5fb84b958f07417784b060434b", "420938134-1629960477", 60, 12, 30, 1, "420938134-1629953256"
    ),
    "transistor": MVTecCategory(
        "150464/99b8ea0332438d64fcc2475ee73f9c29", "420938166-1629960554", 213, 60, 40, 4, "420938166-1629953277"
    ),
    "wood": MVTecCategory(
        "150465/d5b4115b720cdb54d217e75636e6e374", "420938383-1629960649", 247, 19, 60, 5, "420938383-1629953354"
    ),
    "zipper": MVTecCategory(
        "150466/bd155b557520edaf692d9bfdb915c24a", "420938385-1629960680", 240, 32, 119, 7, "420938385-1629953449"
    ),
}
MVTEC_PAGE = "https://www.mvtec.com/company/research/datasets/mvtec-ad"


def mvtec_category_urls(category: str) -> tuple[str, ...]:
    """The known links of one category's archive, current first."""
    c = MVTEC[category]
    oldest = _OLDEST_PILL_SHARE if category == "pill" else _OLDEST_SHARE
    return tuple(
        f"{_HOST}/{share}/download/{archive_id}/{category}.tar.xz"
        for share, archive_id in ((c.share, c.archive_id), (_OLDER_SHARE, c.archive_id), (oldest, c.older_id))
    )


@dataclass(frozen=True)
class Benchmark:
    """A data set its owners publish as one archive, with its own protocol."""

    title: str
    archive: str  # the file name of the owners' archive
    urls: tuple[str, ...]  # current first
    sha256: str  # of the archive, as the tools that download it check it (the owners publish none)
    licence: str
    page: str
    categories: tuple[str, ...]


BENCHMARKS = {
    # Heckler-Kram et al., "MVTec AD 2", 2025 (arXiv 2503.21622). One archive of 30.5 GiB; the link
    # moved in 2025, the older one is kept as a fallback (same file, same digest).
    "mvtec_ad2": Benchmark(
        "MVTec AD 2",
        "mvtec_ad_2.tar.gz",
        (
            f"{_HOST}/150997/701c90d3aea6588f404936e32a674602/download/466712769-1743429042/mvtec_ad_2.tar.gz",
            f"{_HOST}/121573/7f68fe2c4f7c2ceaa08f463aaeb2f414/download/466712769-1743422799/mvtec_ad_2.tar.gz",
        ),
        "c0ded99ef32bfc8e352d52beb44515e5b292b8598cb963aadfa91ca0763505e4",
        "CC BY-NC-SA 4.0",
        "https://www.mvtec.com/research-teaching/datasets/mvtec-ad-2",
        mvtec_ad2.SCENARIOS,
    ),
    # Zou et al., "SPot-the-Difference", ECCV 2022 (amazon-science/spot-diff). Its repository's
    # LICENSE-DATASET is CC BY 4.0; anomalib's docstring says CC BY-NC-SA 4.0, which nothing upstream says.
    "visa": Benchmark(
        "VisA",
        "VisA_20220922.tar",
        ("https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar",),
        "2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362",
        "CC BY 4.0",
        "https://github.com/amazon-science/spot-diff",
        visa.CATEGORIES,
    ),
    # Bergmann et al., "Beyond Dents and Scratches", IJCV 2022.
    "mvtec_loco": Benchmark(
        "MVTec LOCO AD",
        "mvtec_loco_anomaly_detection.tar.xz",
        (
            f"{_HOST}/48237/1b9106ccdfbb09a0c414bd49fe44a14a/download/430647091-1646842701/"
            "mvtec_loco_anomaly_detection.tar.xz",
        ),
        "9e7c84dba550fd2e59d8e9e231c929c45ba737b6b6a6d3814100f54d63aae687",
        "CC BY-NC-SA 4.0",
        "https://www.mvtec.com/company/research/datasets/mvtec-loco",
        loco.CATEGORIES,
    ),
}
MVTEC_LICENCE = "CC BY-NC-SA 4.0"


def known_links() -> dict[str, tuple[str, ...]]:
    """Every known download link, by what it serves (what the monthly link check requests)."""
    return {
        "mvtec (full archive)": MVTEC_FULL_URLS,
        **{f"mvtec/{name}": mvtec_category_urls(name) for name in MVTEC},
        **{name: b.urls for name, b in BENCHMARKS.items()},
    }


def known_categories(spec: DatasetSpec) -> tuple[str, ...] | None:
    """The categories a source can provide, or None when only the data itself can tell."""
    if spec.source == "bundled":
        return tuple(BUNDLED)
    if spec.source == "mvtec":
        return tuple(MVTEC)
    if spec.source in BENCHMARKS:
        return BENCHMARKS[spec.source].categories
    return None


def check_category(spec: DatasetSpec, category: str) -> None:
    known = known_categories(spec)
    if known is not None and category not in known:
        raise UsageError(
            f"unknown category '{category}' for dataset '{spec.name}' (params.yaml run.categories); allowed: {', '.join(known)}"
        )


def bundled_archive(category: str) -> tuple[Path, str]:
    entry = BUNDLED[category]
    path = Path(entry.location)
    if not path.is_file():
        raise UsageError(
            f"{path}: bundled archive missing; run from the project root, or restore it with 'git checkout -- {entry.location}'"
        )
    return path, entry.sha256
