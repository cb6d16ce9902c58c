"""The pipeline's dependency graph, checked with real `dvc repro` runs in a throw-away git + DVC copy."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, edit_params, small_copy

B0, B1 = "efficientnet_lite0", "efficientnet_lite1"


class Project:
    def __init__(self, root: Path):
        self.root = root
        self.env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

    def sh(self, *cmd: str) -> str:
        result = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    def repro(self, *args: str) -> set[str]:
        """The stages that `dvc repro` ran."""
        return set(re.findall(r"Running stage '([^']+)'", self.sh("dvc", "repro", *args)))

    def edit(self, **changes) -> None:
        edit_params(self.root, **changes)

    def summary(self) -> dict:
        return json.loads((self.root / "metrics/summary.json").read_text())

    def init(self) -> None:
        """git and DVC in the copy: `dvc repro` and `dvc exp` need both."""
        self.sh("git", "init", "-q")
        self.sh("dvc", "init", "-q")
        self.sh("dvc", "config", "core.analytics", "false")


def scratch_project(root: Path, **params) -> Project:
    """A throw-away copy of the pipeline: dvc.yaml, params.yaml (with ``params`` set), the stage code and the bundled
    data; git and DVC initialised."""
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    for package in ("stages", "patchcore"):  # the stage commands and the library their deps list
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "data/bundled", root / "data/bundled")
    # what the project holds beside the stages' code, so a test can touch it
    shutil.copytree(REPO / "bench", root / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "README.md", root / "README.md")
    p = Project(root)
    p.edit(**params)
    p.init()
    return p


@pytest.fixture(scope="module")
def project(sample_root, tmp_path_factory) -> Project:
    base = tmp_path_factory.mktemp("dvcgraph")
    tiny = base / "tiny"
    small_copy(sample_root, tiny / "widget", train=4, good=1, defective=2)
    small_copy(sample_root, tiny / "gadget", train=4, good=1, defective=2)
    p = scratch_project(
        base / "proj",
        **{
            "download.tiny": {"source": "folder", "path": str(tiny)},
            "run.dataset": "tiny",
            "run.categories": ["widget"],
            "run.backbones": [B0, B1],
            "coreset.holdout_fraction": 0.25,
            "coreset.holdout_folds": 0,
            "evaluate.bootstrap": 20,
        },
    )
    ran = p.repro()
    assert ran == {
        "download@widget",
        f"extract@widget-{B0}",
        f"extract@widget-{B1}",
        f"coreset@widget-{B0}",
        f"coreset@widget-{B1}",
        f"evaluate@widget-{B0}",
        f"evaluate@widget-{B1}",
        f"export@widget-{B0}",
        f"export@widget-{B1}",
        "summarize",
    }
    assert p.repro() == set()  # nothing changed, nothing runs
    return p


EVALUATE_AND_EXPORT = {f"{stage}@widget-{b}" for stage in ("evaluate", "export") for b in (B0, B1)}


@pytest.mark.parametrize(
    ("path", "reached"),
    [
        ("patchcore/apps/service/app.py", set()),  # the service
        ("patchcore/apps/service/history.py", set()),
        ("patchcore/apps/cli.py", set()),  # the CLI's commands beside the stages
        ("patchcore/apps/predict.py", set()),
        ("patchcore/apps/service/assets/index.html", set()),  # the review page
        ("patchcore/apps/service/assets/app.js", set()),
        ("README.md", set()),
        ("bench/serve.py", set()),
        ("bench/README.md", set()),
        ("patchcore/core/scoring.py", EVALUATE_AND_EXPORT),  # what scores patches: evaluate and export only
    ],
)
def test_a_comment_reruns_only_the_stages_whose_code_it_is(project, path, reached):
    file = project.root / path
    before = file.read_bytes()
    comment = {".py": b"\n# a comment\n", ".js": b"\n// a comment\n", ".html": b"\n<!-- a comment -->\n"}
    file.write_bytes(before + comment.get(file.suffix, b"\n<!-- a comment -->\n"))
    try:
        dry = set(re.findall(r"Running stage '([^']+)'", project.sh("dvc", "repro", "--dry")))
    finally:
        file.write_bytes(before)
    assert dry == reached, f"a comment in {path} would rerun {sorted(dry)}"


def test_a_backbone_edit_reruns_only_its_branch(project):
    project.edit(**{f"backbones.{B1}.target_dim": 100})
    assert project.repro() == {
        f"extract@widget-{B1}",
        f"coreset@widget-{B1}",
        f"evaluate@widget-{B1}",
        f"export@widget-{B1}",
        "summarize",
    }


def test_coreset_settings_rerun_coreset_and_evaluate_not_extract(project):
    project.edit(**{"coreset.ratio": 0.2})
    assert project.repro() == {
        f"coreset@widget-{B0}",
        f"coreset@widget-{B1}",
        f"evaluate@widget-{B0}",
        f"evaluate@widget-{B1}",
        f"export@widget-{B0}",
        f"export@widget-{B1}",
        "summarize",
    }


def test_unchanged_extract_gives_identical_bytes_and_stops_there(project):
    h5 = project.root / f"features/tiny/widget/{B0}/train.h5"
    before = h5.read_bytes()
    assert project.repro("-f", "-s", f"extract@widget-{B0}") == {f"extract@widget-{B0}"}
    assert h5.read_bytes() == before
    assert project.repro() == set()  # coreset and evaluate see the same bytes and are skipped


def test_adding_then_removing_a_category(project):
    project.edit(**{"run.categories": ["widget", "gadget"]})
    assert project.repro() == {
        "download@gadget",
        f"extract@gadget-{B0}",
        f"extract@gadget-{B1}",
        f"coreset@gadget-{B0}",
        f"coreset@gadget-{B1}",
        f"evaluate@gadget-{B0}",
        f"evaluate@gadget-{B1}",
        f"export@gadget-{B0}",
        f"export@gadget-{B1}",
        "summarize",
    }
    assert "gadget" in project.summary()[B0]
    project.edit(**{"run.categories": ["widget"]})
    assert project.repro() == {"summarize"}
    assert "gadget" not in project.summary()[B0] and "widget" in project.summary()[B0]


def test_adding_a_backbone_runs_only_its_stages(project):
    project.edit(**{"run.backbones": [B0]})
    assert project.repro() == {"summarize"}
    project.edit(**{"run.backbones": [B0, "efficientnet_lite2"]})
    b2 = "efficientnet_lite2"
    assert project.repro() == {
        f"extract@widget-{b2}",
        f"coreset@widget-{b2}",
        f"evaluate@widget-{b2}",
        f"export@widget-{b2}",
        "summarize",
    }
    assert set(project.summary()) == {"dataset", B0, b2}


def _lock_check(root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / ".ci/dvc_lock_check.py"), str(root)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_fresh_clone_would_run_no_stage_and_the_ci_check_names_a_stale_one(project, tmp_path):
    """CI's lock step on a clone (no DVC cache: the cached outputs are missing): empty when dvc.lock is current,
    a non-zero exit naming the stage when one would run. Summarize's deps hold only files git tracks, so a
    fresh clone (without evaluate's DVC-cached pictures) computes the same hashes as the lock."""
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t")
    project.sh(*git, "add", "-A")
    project.sh(*git, "commit", "-q", "-m", "state")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project.root), str(clone)], check=True, timeout=120)
    assert not list(clone.glob("pictures/**/maps.png"))  # DVC-cached: not in the clone
    fresh = _lock_check(clone, project.env)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    edit_params(clone, **{"evaluate.blur_sigma": 2.0})
    stale = _lock_check(clone, project.env)
    assert stale.returncode == 1 and f"evaluate@widget-{B0}" in stale.stderr and "Traceback" not in stale.stderr
