"""Where each stage reads and writes; dvc.yaml spells the same paths."""

from __future__ import annotations

from pathlib import Path


def data_dir(dataset: str, category: str) -> Path:
    return Path("data") / dataset / category


def feature_dir(dataset: str, category: str, backbone: str) -> Path:
    return Path("features") / dataset / category / backbone


def metrics_file(dataset: str, category: str, backbone: str) -> Path:
    return Path("metrics") / dataset / backbone / f"{category}.json"


def plots_dir(dataset: str, category: str, backbone: str) -> Path:
    return Path("plots") / dataset / backbone / category


SUMMARY = Path("metrics") / "summary.json"
