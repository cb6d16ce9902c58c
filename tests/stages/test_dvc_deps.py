"""dvc.yaml lists, for each stage, exactly the project files its command runs."""

import pytest
import yaml

from stages.store import paths

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


def _declared(stage: str, dataset: str, category: str, backbone: str) -> set[str]:
    """What the stage's code reserves as its output set (store.paths), as paths."""
    if stage == "extract":
        return {p.as_posix() for p in paths.extract_outputs(dataset, category, backbone)}
    files, folders = paths.evaluate_outputs(dataset, category, backbone)
    return {p.as_posix() for p in [*files, *folders]}


@pytest.mark.parametrize("stage", ["extract", "evaluate"])
def test_the_output_set_a_stage_commits_is_its_dvc_outs(stage):
    # an output missing from the set would be renamed on its own, outside the commit
    listed = set()
    for entry in STAGES[stage].get("outs", []) + STAGES[stage].get("plots", []) + STAGES[stage].get("metrics", []):
        listed.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    names = {"${run.dataset}": "D", "${item.category}": "C", "${item.backbone}": "B"}
    spelled = set()
    for path in listed:
        for key, value in names.items():
            path = path.replace(key, value)
        spelled.add(path)
    assert spelled == _declared(stage, "D", "C", "B")
