"""params.yaml as typed settings: misspelt keys, bad values and unsafe names are one-line errors."""

import pytest
import yaml
from pydantic import ValidationError

from patchcore import config
from patchcore.errors import UsageError

from helpers import REPO, assert_usage_error, edit_params, files_under, run_cli

RAW = yaml.safe_load((REPO / "params.yaml").read_text())

# (where the typo goes, the misspelt key, the key it should have been)
TYPOS = [
    ("", "extrct", "extract"),
    ("run", "categries", "categories"),
    ("download.sample", "sorce", "source"),
    ("backbones.efficientnet_lite2", "interpolaton", "interpolation"),
    ("extract", "batchsize", "batch_size"),
    ("coreset", "holdout_fracton", "holdout_fraction"),
    ("evaluate", "blur_sigm", "blur_sigma"),
]


@pytest.mark.parametrize(("section", "typo", "meant"), TYPOS, ids=[t[0] or "top" for t in TYPOS])
def test_a_misspelt_key_names_itself_and_the_closest_key(project, section, typo, meant):
    edit_params(project, **{f"{section}.{typo}" if section else typo: 0.2})
    result = run_cli("download", "-c", "hazelnut_toy", cwd=project)
    dotted = f"{section}.{typo}" if section else typo
    assert_usage_error(result, "params.yaml", f"'{dotted}'", f"did you mean '{meant}'?")
    assert files_under(project / "data" / "sample") == []


def _load(**changes) -> config.Params:
    data = yaml.safe_load(yaml.safe_dump(RAW))
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    return config.validate(config.Params, data, "params.yaml")


def test_the_committed_params_load_and_keep_their_values():
    params = _load()
    assert params.run.dataset == "sample" and params.run.backbones == ("efficientnet_lite2",)
    lite2 = params.backbone("efficientnet_lite2")
    assert (lite2.name, lite2.crop, lite2.target_dim, lite2.interpolation) == (
        "efficientnet_lite2",
        260,
        168,
        "bilinear",
    )
    assert (
        params.coreset.holdout_folds == 5
        and params.coreset.holdout_fraction == 0.0
        and params.evaluate.reweight_neighbours == 9
    )
    assert params.evaluate.threshold.method == "holdout_quantile" and params.evaluate.threshold.quantile == 0.99
    with pytest.raises(ValidationError, match="frozen"):
        params.coreset.ratio = 0.5  # frozen: settings are passed down, never changed on the way


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        ({"coreset.ratio": 1.5}, ["'coreset.ratio'", "(0, 1]"]),
        ({"coreset.ratio": True}, ["'coreset.ratio'", "number"]),
        ({"extract.batch_size": 0}, ["'extract.batch_size'", ">= 1"]),
        ({"extract.batch_size": "8"}, ["'extract.batch_size'", "integer"]),
        ({"extract.channels_last": "yes"}, ["'extract.channels_last'"]),
        ({"coreset.holdout_fraction": 1.0}, ["'coreset.holdout_fraction'", "[0, 1)"]),
        ({"backbones.efficientnet_lite2.crop": 999}, ["backbones.efficientnet_lite2", "crop <= resize"]),
        ({"backbones.efficientnet_lite2.mean": [0.5, 0.5]}, ["backbones.efficientnet_lite2.mean", "too few"]),
        ({"backbones.efficientnet_lite2.interpolation": "nearest"}, ["interpolation", "bicubic"]),
        ({"backbones.efficientnet_lite2.name": "other"}, ["efficientnet_lite2", "name"]),
        ({"run.backbones": ["nope"]}, ["run.backbones", "nope", "efficientnet_lite1"]),
        ({"run.dataset": "nope"}, ["run.dataset", "nope", "sample"]),
        ({"download.sample.source": "ftp"}, ["'download.sample.source'", "bundled"]),
        ({"download.web": {"source": "url", "url": "https://example.org/a.tar.gz"}}, ["download.web", "sha256"]),
        ({"evaluate.threshold.quantile": 0}, ["'evaluate.threshold.quantile'", "(0, 1]"]),
        ({"evaluate.threshold.pixel_quantile": 1.5}, ["'evaluate.threshold.pixel_quantile'", "(0, 1]"]),
        ({"evaluate.threshold.method": "otsu"}, ["'evaluate.threshold.method'", "holdout_quantile", "f1_max", "fixed"]),
        ({"evaluate.threshold.method": "fixed"}, ["evaluate.threshold", "'value' is required for method 'fixed'"]),
        ({"evaluate.threshold": {"method": "fixed", "value": float("nan")}}, ["'evaluate.threshold.value'", "finite"]),
        ({"evaluate.threshold": {"method": "fixed", "value": float("inf")}}, ["'evaluate.threshold.value'", "finite"]),
        ({"evaluate.threshold": {"method": "fixed", "value": "high"}}, ["'evaluate.threshold.value'", "number"]),
        ({"evaluate.threshold": {"method": "fixed", "value": -1.0}}, ["'evaluate.threshold.value'", "positive"]),
        ({"evaluate.threshold.value": 3.0}, ["evaluate.threshold", "only used by method 'fixed'"]),
        ({"evaluate.threshold.quantiel": 0.9}, ["'evaluate.threshold.quantiel'", "did you mean 'quantile'?"]),
        ({"coreset.holdout_fraction": 0.1}, ["coreset", "holdout_fraction", "holdout_folds", "set the other one to 0"]),
        ({"coreset.holdout_folds": 1}, ["coreset", "'holdout_folds' must be 0 (off) or at least 2"]),
        ({"coreset.holdout_folds": -2}, ["'coreset.holdout_folds'", ">= 0"]),
        ({"evaluate.faiss_threads": -1}, ["'evaluate.faiss_threads'", ">= 0"]),
        ({"evaluate.device": "gpu"}, ["'evaluate.device'", "auto, cpu, cuda or cuda:N"]),
        ({"coreset.device": "cuda:x"}, ["'coreset.device'", "cuda:N"]),
        ({"extract.precision": "half"}, ["'extract.precision'", "bfloat16"]),
    ],
)
def test_bad_values_name_the_key(changes, needles):
    with pytest.raises(UsageError) as caught:
        _load(**changes)
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


UNSAFE = ["../../../d", "/etc", "a/b", "..", ".hidden", "-c", "", "a\\b", "x" * 101, "x" * 65, "trailing.", "a.b."]


@pytest.mark.parametrize("name", UNSAFE)
def test_names_that_become_paths_must_be_plain(name):
    kinds = {
        "dataset": {"run.dataset": name, f"download.{name}": {"source": "bundled"}},
        "category": {"run.categories": [name]},
        "backbone": {"run.backbones": [name], f"backbones.{name}": RAW["backbones"]["efficientnet_lite2"]},
    }
    for kind, changes in kinds.items():
        data = yaml.safe_load(yaml.safe_dump(RAW))
        for dotted, value in changes.items():
            section, _, key = dotted.partition(".")
            data[section][key] = value
        with pytest.raises(UsageError, match="not a plain name") as caught:
            config.validate(config.Params, data, "params.yaml")
        where = {"dataset": ("download", "run.dataset"), "category": ("run.categories",), "backbone": ("backbones",)}[
            kind
        ]
        assert any(w in str(caught.value) for w in where), caught.value


@pytest.mark.parametrize("name", ["hazelnut_toy", "metal-nut", "v1.2", "MVTec_AD"])
def test_plain_names_are_accepted(name):
    assert _load(**{"run.categories": [name]}).run.categories == (name,)


def test_a_category_on_the_command_line_must_be_selected(project):
    assert_usage_error(run_cli("download", "-c", "../../etc", cwd=project), "../../etc", "run.categories")
    assert files_under(project / "data" / "sample") == []


# every setting that sizes memory or time, just past its bound, and a word of the reason given
SIZING = [
    ("backbones.efficientnet_lite2.resize", 1025, "MVTec AD"),
    ("backbones.efficientnet_lite2.target_dim", 4097, "channels"),
    ("backbones.efficientnet_lite2.layer_dim", 10**6, "channels"),
    ("aggregation.patchsize", 11, "square"),
    ("extract.batch_size", 257, "forward pass"),
    ("extract.num_workers", 65, "cores"),
    ("coreset.projection_dim", 4097, "selection"),
    ("coreset.holdout_folds", 21, "fold"),
    ("coreset.seed", 2**32, "32-bit"),
    ("coreset.seed", -1, ">= 0"),
    ("evaluate.seed", 10**5000, "digits"),  # the message does not spell a 5000-digit number
    ("evaluate.query_batch", 262_145, "GiB"),
    ("evaluate.reweight_neighbours", 65, "Eq. 7"),
    ("evaluate.bootstrap", 10_001, "resamples"),
    ("evaluate.faiss_threads", 1025, "threads"),
    ("evaluate.approximate_above", 10**12 + 1, "patches"),
    ("evaluate.blur_sigma", 64.5, "[0, 64]"),
]


@pytest.mark.parametrize(("key", "value", "reason"), SIZING, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(SIZING)])
def test_settings_that_size_memory_or_time_are_bounded_with_the_reason(key, value, reason):
    with pytest.raises(UsageError) as caught:
        _load(**{key: value})
    message = str(caught.value)
    assert f"'{key}'" in message and reason in message and len(message) < 300, message


def test_the_bounds_admit_what_the_method_uses():
    # the paper's WideResNet50 at its largest: 1024 dims, a 1024 px input, patch 9, 20 folds
    params = _load(
        **{
            "backbones.wide_resnet50.resize": 1024,
            "backbones.wide_resnet50.crop": 1024,
            "aggregation.patchsize": 9,
            "coreset.holdout_folds": 20,
            "coreset.seed": 2**32 - 1,
            "evaluate.bootstrap": 10_000,
        }
    )
    assert params.backbone("wide_resnet50").target_dim == 1024 and params.aggregation.patchsize == 9


def test_a_name_of_the_longest_allowed_length_names_every_file_the_stages_write():
    """A name the settings accept must not fail later at a stage ('<name>.json' and each temporary fit a file name)."""
    from patchcore.config.names import MAX_SETTING_NAME
    from patchcore.store import paths

    name = "x" * MAX_SETTING_NAME
    files, folders = paths.evaluate_outputs(name, name, name)
    written = [
        *paths.extract_outputs(name, name, name),
        *files,
        *folders,
        paths.overlay_file("roc", name),
        paths.data_dir(name, name),
    ]
    for path in written:
        temporary = f".{path.name}.4194304.abcdefgh{path.suffix}.tmp"  # store/atomic.py's pattern, the largest pid
        assert len(temporary.encode()) <= 255 and all(len(part.encode()) <= 255 for part in path.parts), path
