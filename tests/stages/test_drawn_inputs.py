"""Drawn params.yaml and model.json values: every run succeeds or is one error line, and leaves nothing behind.

Hypothesis draws a key and a value of any type and range (numbers past every bound, NaN,
strings, lists, nulls). The commands run in this process, through the same classification the
CLI's main() uses (errors.failure, through command.run): an exception it does not turn into an `error:` line would
be a traceback for the user, and fails the test. A refused run must leave every output as it
was (a stage's outputs change together or not at all) and no temporary anywhere.
"""

import contextlib
import hashlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from patchcore.apps import cli
from patchcore.errors import failure

from helpers import lite0_model

LITE0 = "efficientnet_lite0"
ARGS = ["-c", "hazelnut_toy", "-b", LITE0]
MODEL = f"features/sample/hazelnut_toy/{LITE0}"
OUTPUTS = ("features", "metrics", "plots")

# what each drawn key reruns: a backbone or aggregation key changes the features
PARAMS_KEYS = {
    f"backbones.{LITE0}.resize": ("extract", "coreset", "evaluate"),
    f"backbones.{LITE0}.crop": ("extract", "coreset", "evaluate"),
    f"backbones.{LITE0}.target_dim": ("extract", "coreset", "evaluate"),
    f"backbones.{LITE0}.layer_dim": ("extract", "coreset", "evaluate"),
    f"backbones.{LITE0}.std": ("extract", "coreset", "evaluate"),
    "aggregation.patchsize": ("extract", "coreset", "evaluate"),
    "extract.batch_size": ("extract", "coreset", "evaluate"),
    "extract.train_fraction": ("extract", "coreset", "evaluate"),
    "coreset.ratio": ("coreset", "evaluate"),
    "coreset.projection_dim": ("coreset", "evaluate"),
    "coreset.seed": ("coreset", "evaluate"),
    "coreset.holdout_folds": ("coreset", "evaluate"),
    "coreset.holdout_fraction": ("coreset", "evaluate"),
    "evaluate.blur_sigma": ("evaluate",),
    "evaluate.query_batch": ("evaluate",),
    "evaluate.reweight_neighbours": ("evaluate",),
    "evaluate.bootstrap": ("evaluate",),
    "evaluate.max_fpr": ("evaluate",),
    "evaluate.seed": ("evaluate",),
    "evaluate.approximate_above": ("evaluate",),
    "evaluate.threshold.quantile": ("evaluate",),
    "evaluate.threshold.pixel_quantile": ("evaluate",),
}
# extract.num_workers is left out: a valid 64 starts 64 decoding processes, minutes of a CI run for
# no new path (its bound is checked in tests/config)
CARD_KEYS = [
    "threshold",
    "score_range",
    "pixel_threshold",
    "connectivity",
    "reweight_neighbours",
    "blur_sigma",
    "heat_scale",
    "approximate_above",
    "channels_last",
    "precision",
    "weights",
    "category",
    "backbone.resize",
    "backbone.target_dim",
    "aggregation.patchsize",
    "fingerprint.grid",
]

# near the values the method uses, past every bound, and of every other type; the largest valid
# sizes are not drawn on purpose (a 1024 px extract is a benchmark, not a test)
VALUES = st.one_of(
    st.integers(min_value=-3, max_value=300),
    st.sampled_from([-1, 0, 1, 2, 3, 5, 9, 11, 2**31, 2**32, 2**63, 10**13, 10**40]),
    st.floats(min_value=-2.0, max_value=2.0),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e-300, 1e300, 0.0, 0.5, 1.0]),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.lists(st.integers(min_value=-2, max_value=300), max_size=3),
    st.dictionaries(st.sampled_from(["a", "method"]), st.integers(min_value=0, max_value=3), max_size=2),
)


def _near(current: object) -> st.SearchStrategy:
    """Values of the current one's type and size: most of them valid, so the runs get past the settings."""
    if isinstance(current, bool):
        return st.booleans()
    if isinstance(current, int):
        return st.integers(min_value=max(0, current // 2 - 2), max_value=current * 2 + 2)
    if isinstance(current, float):
        return st.floats(min_value=0.0, max_value=max(2 * current, 1.0))
    if isinstance(current, list) and current and all(isinstance(v, int) for v in current):
        return st.lists(
            st.integers(min_value=1, max_value=2 * max(current)), min_size=len(current), max_size=len(current)
        )
    if isinstance(current, list):
        return st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=len(current), max_size=len(current))
    return st.just(current)


def _get(node: dict, dotted: str) -> object:
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None  # type: ignore[assignment]
    return node


DRAWS = settings(
    max_examples=100, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _run(project: Path, command: str, *args: str) -> tuple[int, str]:
    """The command as the CLI runs it, in this process: (exit code, error line or '')."""
    with (
        contextlib.chdir(project),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        try:
            code = cli.app([command, *args], standalone_mode=False)
            return int(code or 0), ""
        except BaseException as exc:
            handled = failure(exc)
            if handled is None:
                raise  # a traceback the user would see
            return handled[1], handled[0]


def _snapshot(project: Path) -> dict[str, str]:
    files = (p for top in OUTPUTS for p in (project / top).rglob("*") if p.is_file())
    return {p.relative_to(project).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _leftovers(root: Path) -> list[str]:
    return sorted(
        p.name for p in root.rglob(".*") if p.name.endswith((".tmp", ".old")) or p.name.startswith(".patchcore-commit")
    )


def _set(node: dict, dotted: str, value: object) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value


@pytest.fixture(scope="module")
def trained(sample_root, tmp_path_factory) -> Path:
    changes = {
        "run.categories": ["hazelnut_toy"],
        "coreset.holdout_folds": 2,
        "evaluate.bootstrap": 5,
        "extract.num_workers": 0,
    }
    return lite0_model(sample_root, tmp_path_factory.mktemp("drawn"), (4, 1, 1), **changes)


@given(data=st.data())
@DRAWS
def test_drawn_params_values_run_or_are_one_line_and_change_nothing(trained, data):
    with tempfile.TemporaryDirectory() as scratch:
        project = Path(scratch) / "p"
        shutil.copytree(trained, project)
        params = yaml.safe_load((project / "params.yaml").read_text())
        key = data.draw(st.sampled_from(sorted(PARAMS_KEYS)), label="key")
        value = data.draw(st.one_of(_near(_get(params, key) or 1), VALUES), label="value")
        _set(params, key, value)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for command in PARAMS_KEYS[key]:
            before = _snapshot(project)
            code, line = _run(project, command, *ARGS)
            event(f"{command}: exit {code}")
            assert code in (0, 2), (key, value, command, code, line)
            if code == 2:
                assert line and "\n" not in line, line
                assert _snapshot(project) == before, f"{command} refused ({line}) but changed its outputs"
                break
        assert _leftovers(project) == []


@given(data=st.data())
@DRAWS
def test_drawn_model_json_values_predict_or_are_one_line_and_write_nothing(trained, sample_root, data):
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "model"
        shutil.copytree(trained / MODEL, model)
        card = json.loads((model / "model.json").read_text())
        key = data.draw(st.sampled_from(CARD_KEYS), label="key")
        value = data.draw(st.one_of(_near(_get(card, key)), VALUES), label="value")
        _set(card, key, value)
        (model / "model.json").write_text(json.dumps(card))
        before = {p.name: p.read_bytes() for p in model.iterdir()}
        out = Path(scratch) / "out"
        code, line = _run(
            Path(scratch), "predict", str(model), str(sample_root / "test/good/04.jpg"), "--out", str(out)
        )
        event(f"predict: exit {code}")
        assert code in (0, 2), (key, value, code, line)
        if code == 2:
            assert line and "\n" not in line and not (out / "predictions.jsonl").exists(), line
        else:
            assert len((out / "predictions.jsonl").read_text().splitlines()) == 1
        assert {p.name: p.read_bytes() for p in model.iterdir()} == before and _leftovers(Path(scratch)) == []
