"""The export stage's files are DVC model artifacts, one per selected category and backbone."""

import yaml
from dvc.repo import Repo

from helpers import REPO


def test_every_exported_model_of_the_default_run_is_an_artifact():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    run = params["run"]
    with Repo(str(REPO)) as repo:
        found = repo.artifacts.read()["dvc.yaml"]
        export_outs = {o.def_path for s in repo.index.stages if s.name.startswith("export@") for o in s.outs}
    expected = {
        f"{c}-{b}".replace("_", "-"): f"models/{run['dataset']}/{c}/{b}/model.onnx"
        for c in run["categories"]
        for b in run["backbones"]
    }
    assert {name: a.path for name, a in found.items()} == expected
    for artifact in found.values():
        assert artifact.type == "model" and artifact.desc and "onnx" in artifact.labels
        assert any(artifact.path.startswith(out + "/") for out in export_outs), artifact.path
