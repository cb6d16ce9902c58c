"""dvc.yaml lists, for each stage, exactly the project files its command runs."""

import pytest
import yaml

from helpers import REPO
from imports import command_closure

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_are_its_import_closure(stage):
    command = STAGES[stage]["cmd"].split()[1]
    listed = {d for d in STAGES[stage]["deps"] if d.startswith("stages/")}
    expected = command_closure(command)
    missing, extra = sorted(expected - listed), sorted(listed - expected)
    assert not missing and not extra, f"dvc.yaml stage '{stage}': add {missing}, remove {extra}"


def test_the_closure_follows_lazy_and_relative_imports():
    files = command_closure("evaluate")
    assert {"stages/evaluate.py", "stages/core/scoring.py", "stages/datasets/images.py", "stages/config/settings.py"} <= files
    assert "stages/extract.py" not in files and "stages/backbones/registry.py" not in files  # other commands' code
