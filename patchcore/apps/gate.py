"""`patchcore gate`: CI's check that no committed AUROC moved by more than a tolerance."""

from __future__ import annotations

from pathlib import Path

from patchcore.core.tables import gate as compare
from patchcore.store import metrics_files


def gate(current: Path, baseline: Path, tolerance: float) -> list[str]:
    fix = "pass the file written by 'patchcore summarize'"
    return compare(metrics_files.read_summary(current, fix), metrics_files.read_summary(baseline, fix), tolerance)
