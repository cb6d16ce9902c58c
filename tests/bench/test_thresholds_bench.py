"""bench/thresholds.py at a tiny size, so a changed stage or record format fails here rather than rotting the bench."""

import subprocess
import sys

from helpers import REPO, lite0_model


def test_threshold_bench_prints_every_method_before_and_after(sample_root, tmp_path):
    project = lite0_model(sample_root, tmp_path, (10, 3, 5))
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench/thresholds.py"),
            "--project",
            str(project),
            "--category",
            "hazelnut_toy",
            "--backbone",
            "efficientnet_lite0",
            "--fixed",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| before") or line.startswith("| after")]
    assert len(rows) == 6
    assert "| before (10% split) | holdout_quantile | " in rows[0] and "| 1 |" in rows[0]  # 10% of 10 images
    assert "| after (5-fold) | holdout_quantile | " in rows[3] and "| 10 |" in rows[3]  # every training image
    assert "| 5.000 | params.yaml |" in rows[2] and "[" in rows[0].split("|")[3] and "test labels" in rows[1]
