"""The fingerprint covers every setting that can change a feature value, so a bank of other features is refused."""

import pytest
import yaml

from patchcore import config
from patchcore.errors import UsageError
from patchcore.store.model_folder import compare, fingerprint

from helpers import REPO

PARAMS = config.validate(config.Params, yaml.safe_load((REPO / "params.yaml").read_text()), "params.yaml")
BASE = PARAMS.backbone("efficientnet_lite0")

# settings that cannot change the value of a feature, and why; every other one must be in the fingerprint
EXEMPT = {
    ("backbone", "train_fraction"): "which training images are used, not their features",
    ("extract", "batch_size"): "images are computed independently of their batch",
    ("extract", "num_workers"): "decoding processes",
    ("extract", "train_fraction"): "which training images are used, not their features",
    ("extract", "channels_last"): "memory layout: rounding only, as the device (recorded in model.json for predict)",
    ("extract", "device"): "rounding only: a GPU's features may score against a CPU's bank",
}
# a valid other value for each setting that is in the fingerprint
CHANGED = {
    ("backbone", "name"): "efficientnet_lite0_copy",
    ("backbone", "arch"): "timm/tf_efficientnet_lite1",
    ("backbone", "weights"): "random",
    ("backbone", "layers"): ("blocks.1", "blocks.4"),
    ("backbone", "resize"): 256,
    ("backbone", "crop"): 200,
    ("backbone", "mean"): (0.4, 0.5, 0.5),
    ("backbone", "std"): (0.5, 0.5, 0.6),
    ("backbone", "target_dim"): 128,
    ("backbone", "layer_dim"): 96,
    ("backbone", "interpolation"): "bicubic",
    ("backbone", "geometry"): config.GeometrySettings(name="tiles"),
    ("aggregation", "patchsize"): 5,
    ("aggregation", "border"): "valid",
    ("aggregation", "layer_weighting"): "channels",
    ("extract", "precision"): "bfloat16",
}


def _print(
    backbone=BASE,
    aggregation=PARAMS.aggregation,
    extract=PARAMS.extract,
    weights: str | None = None,
    where=("sample", "toy"),
) -> dict:
    """As extract writes it (the weights' identity stands for what `weights:` loads)."""
    features = aggregation.describe(backbone.feature_dim)
    return fingerprint(backbone, weights or backbone.weights, features, (28, 28), extract.precision, *where)


def test_every_setting_is_either_in_the_fingerprint_or_exempt_with_a_reason():
    fields = {("backbone", f) for f in config.BackboneSettings.model_fields}
    fields |= {("aggregation", f) for f in config.AggregationSettings.model_fields}
    fields |= {("extract", f) for f in config.ExtractSettings.model_fields}
    assert fields == set(EXEMPT) | set(CHANGED), (
        "a new setting: add it to the fingerprint (CHANGED) or say in EXEMPT why it cannot change a feature"
    )


@pytest.mark.parametrize(("section", "field"), sorted(CHANGED))
def test_changing_a_setting_that_changes_features_changes_the_fingerprint_and_is_refused(section, field):
    value = CHANGED[(section, field)]
    model = {"backbone": BASE, "aggregation": PARAMS.aggregation, "extract": PARAMS.extract}[section]
    changed = model.model_copy(update={field: value})
    now = _print(**{section: changed}, weights=value if field == "weights" else None)
    before = _print()
    assert now != before
    with pytest.raises(UsageError, match="come from different features"):
        compare(now, "params.yaml", before, "bank.h5")  # what evaluate and predict run on the two


def test_the_data_set_and_category_are_in_it():
    assert _print(where=("sample", "other")) != _print() and _print(where=("mvtec", "toy")) != _print()
