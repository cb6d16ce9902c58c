"""evaluate writes the same bytes whatever faiss's SIMD level, the thread count and the SIMD kernels
torch and numpy pick: the metrics, scores and model of a run do not depend on the x86 machine."""

import os
import shutil

import pytest

from helpers import REPO, edit_params, run_cli, run_stages, small_copy

OUTPUTS = (
    "metrics/sample/efficientnet_lite0/hazelnut_toy.json",
    "plots/sample/efficientnet_lite0/hazelnut_toy/scores.csv",
    "plots/sample/efficientnet_lite0/hazelnut_toy/roc.json",
    "features/sample/hazelnut_toy/efficientnet_lite0/model.json",
    "plots/sample/efficientnet_lite0/hazelnut_toy/roc.png",
    "pictures/sample/efficientnet_lite0/hazelnut_toy/maps.png",
)
SETTINGS = [
    {"FAISS_OPT_LEVEL": "generic", "OMP_NUM_THREADS": "1"},
    {"FAISS_OPT_LEVEL": "avx2", "OMP_NUM_THREADS": "2"},
    {"FAISS_OPT_LEVEL": "avx512", "OMP_NUM_THREADS": "2"},
    {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default"},
    {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2", "NPY_DISABLE_CPU_FEATURES": "AVX512_SPR AVX512_ICL X86_V4"},
]
VARIABLES = {key for settings in SETTINGS for key in settings}


@pytest.fixture(scope="module")
def features(sample_root, tmp_path_factory):
    project = tmp_path_factory.mktemp("determinism")
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    small_copy(sample_root, project / "data/sample/hazelnut_toy", train=10, good=3, defective=5)
    edit_params(
        project,
        **{
            "run.backbones": ["efficientnet_lite0"],
            "run.categories": ["hazelnut_toy"],
            "coreset.holdout_fraction": 0.2,
            "coreset.holdout_folds": 0,
        },
    )
    run_stages(project, "extract", "coreset")
    return project


def test_evaluate_outputs_do_not_depend_on_simd_level_or_threads(features):
    seen = {}
    for settings in SETTINGS:
        env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
        result = run_cli(
            "evaluate", "-c", "hazelnut_toy", "-b", "efficientnet_lite0", cwd=features, env={**env, **settings}
        )
        assert result.returncode == 0, result.stderr
        outputs = {name: (features / name).read_bytes() for name in OUTPUTS}
        for name, data in outputs.items():
            assert seen.setdefault(name, data) == data, f"{name} differs under {settings}"
