"""Every bench script at a tiny size, so a changed stage signature or record format fails CI
instead of rotting the bench (bench/extract.py and bench/extract_breakdown.py had rotted).
Only that they run and print their tables is checked here; their figures are in bench/README.md."""

import hashlib
import os
import subprocess
import sys

import pytest

from helpers import REPO

TINY = {
    "large_images": (
        ["--backbone", "efficientnet_lite0", "--megapixels", "0.3", "--images", "1", "--bank", "2000"]
        + ["--coreset-patches", "20000"],
        # the picture's size opens its row; "| 0.3 |" alone also matched a coreset row whose projection took 0.3 s
        "x 387 | 0.3 | ",
        1,
    ),
    "geometries": (
        ["--category", "hazelnut_toy", "--backbone", "efficientnet_lite0", "--limit", "3", "--scale", "0.5"],
        "| geometry: ",
        3,
    ),
    "train_large": (
        ["--pictures", "3", "--test", "1", "--megapixels", "0.3", "--backbone", "efficientnet_lite0"]
        + ["--coresets", "0.1:folds2", "0.5:holdout0.34"],
        "| 0.",
        2,
    ),
    "tiled_export": (
        ["--pictures", "3", "--megapixels", "0.5", "--backbone", "efficientnet_lite0", "--rounds", "1"],
        "x |",
        2,
    ),
    "coreset": (
        ["--sizes", "2000", "--ratios", "0.1", "--kinds", "random", "--methods", "plain", "lazy"],
        "| random | 2000 x 1536 | 10% |",
        2,
    ),
    "evaluate": (
        ["--images", "6", "--bank", "2000", "--dim", "64", "--size", "64"],
        "| bootstrap, 1000 resamples |",
        1,
    ),
    "search": (["--bank", "2000", "--queries", "500", "--dim", "32", "--rounds", "1"], "| 2000 x 32 | 500 |", 2),
    "extract": (
        ["--backbone", "efficientnet_lite0", "--repeat", "1", "--rounds", "1"],
        "| whole stage, num_workers=",
        1,
    ),
    "extract_breakdown": (["--backbone", "efficientnet_lite0", "--rounds", "1"], "| 0 | 135 |", 1),
    "variants": (
        ["--backbone", "efficientnet_lite0", "--variants", "valid:channels", "--images", "6"],
        "| valid | channels |",
        1,
    ),
    "memory_large_backbone": (
        ["--backbone", "efficientnet_lite0", "--flips", "1", "--weights", "pretrained"],
        "extract, all images:",
        1,
    ),
    "peers": (["--train", "6", "--test", "4", "--size", "128", "--rounds", "1"], "| 0 | project |", 1),
    "latency": (
        [
            "--backbones",
            "efficientnet_lite0",
            "--train",
            "4",
            "--size",
            "128",
            "--calls",
            "1",
            "--rounds",
            "1",
            "--batches",
            "1",
        ],
        "| efficientnet_lite0 |",
        6,
    ),
    "ray": (["--backbone", "efficientnet_lite0", "--variants", "1", "--workers", "1", "--rounds", "1"], "| True |", 2),
    "gpu": (
        [
            "--scale",
            "0.02",
            "--categories",
            "1",
            "--size",
            "64",
            "--device",
            "cpu",
            "--batch-size",
            "4",
            "--workers",
            "1",
            "--crossover-sizes",
            "0",
            "--skip-cpu",
        ],
        "| 3920 x 1024 | 392 |",
        1,
    ),
}


def _run(script: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{script}.py"), *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )


@pytest.mark.parametrize("script", sorted(TINY))
def test_bench_script_runs_at_a_tiny_size(script):
    args, row, count = TINY[script]
    result = _run(script, args)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if row in line]
    assert len(rows) == count, result.stdout


def test_make_surface_rebuilds_the_bundled_archive_byte_for_byte(tmp_path):
    out = tmp_path / "surface.tar.gz"
    result = _run("make_surface", ["--out", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        hashlib.sha256(out.read_bytes()).hexdigest()
        == hashlib.sha256((REPO / "data/bundled/hazelnut_surface.tar.gz").read_bytes()).hexdigest()
    )


def test_make_tray_rebuilds_the_bundled_archive_byte_for_byte(tmp_path):
    out = tmp_path / "tray.tar.gz"
    result = _run("make_tray", ["--out", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        hashlib.sha256(out.read_bytes()).digest()
        == hashlib.sha256((REPO / "data/bundled/hazelnut_tray.tar.gz").read_bytes()).digest()
    )


SCRIPTS = sorted(p.stem for p in (REPO / "bench").glob("*.py") if 'if __name__ == "__main__"' in p.read_text())


def test_every_bench_script_is_in_the_tiny_runs():
    assert set(SCRIPTS) - {"make_surface", "make_tray", "thresholds", "serve", "reference_wrn50"} <= set(TINY), (
        "add the new script to TINY"
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_help(script):
    """argparse formats help strings only when asked (a bare '%' in one crashed --help of bench/latency.py)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{script}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0 and "usage:" in result.stdout and not result.stderr.strip(), result.stderr[-2000:]


INSPECTION_SRC = os.environ.get("PATCHCORE_INSPECTION_SRC")  # a checkout of patchcore-inspection's src/ (not on PyPI)


@pytest.mark.skipif(
    not INSPECTION_SRC, reason="PATCHCORE_INSPECTION_SRC does not name patchcore-inspection's src folder"
)
def test_reference_wrn50_agrees_with_the_reference_in_eval_mode():
    """The reference's features in eval mode are the project's to float32 noise: patch scores Spearman 1.0."""
    args = ["--inspection-src", str(INSPECTION_SRC), "--train", "4", "--test", "4", "--size", "128", "--threads", "1"]
    result = _run("reference_wrn50", args)
    assert result.returncode == 0, result.stderr[-2000:]
    row = next(
        line
        for line in result.stdout.splitlines()
        if line.startswith("| (d) patch scores, full bank | project vs inspection-eval |")
    )
    relative, note = row.split("|")[4], row.split("|")[5]
    assert float(relative) <= 1e-5 and "Spearman 1.0000" in note, row
