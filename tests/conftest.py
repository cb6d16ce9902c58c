"""Fixtures: a small copy of the bundled sample, a scratch project folder."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from helpers import BUNDLED, REPO


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """The bundled Hazelnut Toy photos, unpacked once per test session."""
    dest = tmp_path_factory.mktemp("sample")
    with tarfile.open(BUNDLED) as tar:
        tar.extractall(dest, filter="data")
    return dest / "hazelnut_toy"


@pytest.fixture
def project(tmp_path) -> Path:
    """A scratch project folder holding the repository's params.yaml and bundled archive."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data" / "bundled").mkdir(parents=True)
    shutil.copy(BUNDLED, tmp_path / "data" / "bundled" / BUNDLED.name)
    return tmp_path
