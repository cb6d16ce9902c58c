"""Helpers shared by the tests: the repository's files, a CLI runner, a small copy of the sample."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "data" / "bundled" / "hazelnut_toy.tar.gz"


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``timeout``: a call that must be refused at once (a server that must not start) gets a short one, so a bug
    that lets it run fails the test in a minute instead of holding CI."""
    return subprocess.run(
        [sys.executable, "-m", "patchcore", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_stages(
    project: Path,
    *stages: str,
    category: str = "hazelnut_toy",
    backbone: str = "efficientnet_lite0",
    env: dict | None = None,
) -> None:
    """Run pipeline stages of one category and backbone in ``project``, each of which must succeed."""
    for stage in stages:
        result = run_cli(stage, "-c", category, "-b", backbone, cwd=project, env=env)
        assert result.returncode == 0, result.stderr


def assert_usage_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit code 2, exactly one `error:` line holding every needle, and no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    # progress bars may share stderr; the error itself is exactly one line
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def small_copy(sample_root: Path, dest: Path, train: int = 8, good: int = 3, defective: int = 5) -> Path:
    """A reduced copy of the sample in MVTec layout, so pipeline tests run in seconds."""

    def take(sub: str, n: int) -> list[Path]:
        files = sorted((sample_root / sub).iterdir())[:n]
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, dest / sub / f.name)
        return files

    take("train/good", train)
    take("test/good", good)
    for image in take("test/colour", defective):
        (dest / "ground_truth/colour").mkdir(parents=True, exist_ok=True)
        shutil.copy(
            sample_root / "ground_truth/colour" / f"{image.stem}.png",
            dest / "ground_truth/colour" / f"{image.stem}.png",
        )
    return dest


def edit_params(project: Path, **changes) -> None:
    """Set dotted keys in the project's params.yaml, e.g. edit_params(p, **{"coreset.ratio": 0.5})."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = params
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def files_under(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")) if path.exists() else []


def lite0_model(
    sample_root: Path, project: Path, counts: tuple[int, int, int], env: dict | None = None, **changes
) -> Path:
    """A project whose Lite0 model of a reduced sample (train, good, defective images) was made by
    extract, coreset and evaluate, with the given params.yaml changes on top of the committed ones."""
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    train, good, defective = counts
    small_copy(sample_root, project / "data/sample/hazelnut_toy", train=train, good=good, defective=defective)
    edit_params(project, **{"run.backbones": ["efficientnet_lite0"], **changes})
    run_stages(project, "extract", "coreset", "evaluate", env=env)
    return project


# runs the CLI as `python -m patchcore` does, then writes the loaded module names to a file,
# whatever the command's exit (typer ends with SystemExit)
_RECORDING = """
import atexit, json, runpy, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["patchcore", *sys.argv[2:]]
runpy.run_module("patchcore", run_name="__main__")
"""


def loaded_modules(tmp_path: Path, *args: str, cwd: Path = REPO) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run the CLI with ``args``; its result and every module it had loaded when it ended."""
    record = tmp_path / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", _RECORDING, str(record), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    return result, set(json.loads(record.read_text()))
