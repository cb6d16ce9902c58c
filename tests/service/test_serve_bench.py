"""bench/serve.py at a tiny size on the tests' model, so the bench cannot rot (its figures: bench/README.md)."""

import subprocess
import sys

from conftest import MODEL

from helpers import REPO


def test_serve_bench_prints_its_table(served_project):
    args = [
        "--model",
        str(served_project / MODEL),
        "--project",
        str(served_project),
        "--images",
        str(served_project / "data/sample/hazelnut_toy/test"),
    ]
    args += ["--requests", "6", "--concurrency", "1", "3", "--small", "2"]
    result = subprocess.run(
        [sys.executable, str(REPO / "bench/serve.py"), *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| serve c=")]
    assert len(rows) == 2 and all(line.endswith("| 0 |") for line in rows), result.stdout  # no request failed
    assert "server RSS:" in result.stdout
