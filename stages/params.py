"""Reading and validating params.yaml: every bad value is caught here, before any work starts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import UsageError
from .sources import SOURCES, DatasetSpec

DEFAULT_PARAMS = Path("params.yaml")


def load(path: Path = DEFAULT_PARAMS) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: params file not found; run from the project root or pass --params PATH")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc.__class__.__name__}); fix the file") from None
    if not isinstance(params, dict):
        raise UsageError(f"{path}: expected a mapping of stage names to settings")
    return params


def _section(params: dict, key: str) -> dict:
    value = params.get(key)
    if not isinstance(value, dict):
        raise UsageError(f"params.yaml: missing section '{key}:'; see the README for its keys")
    return value


def _get(section: dict, where: str, key: str, kind: type | tuple[type, ...]):
    if key not in section:
        raise UsageError(f"params.yaml: missing '{where}.{key}'")
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise UsageError(f"params.yaml: '{where}.{key}' must be {names}, got {value!r}")
    return value


@dataclass(frozen=True)
class RunSelection:
    dataset: str
    categories: tuple[str, ...]
    backbones: tuple[str, ...]


def run_selection(params: dict) -> RunSelection:
    run = _section(params, "run")
    dataset = _get(run, "run", "dataset", str)
    datasets = _section(params, "download")
    if dataset not in datasets:
        raise UsageError(f"params.yaml: unknown dataset '{dataset}' in run.dataset; allowed: {', '.join(sorted(datasets))} (keys of 'download:')")
    categories = _get(run, "run", "categories", list)
    backbones = _get(run, "run", "backbones", list)
    if not categories or not backbones:
        raise UsageError("params.yaml: 'run.categories' and 'run.backbones' must each list at least one name")
    known = sorted(_section(params, "backbones"))
    for name in backbones:
        if name not in known:
            raise UsageError(f"params.yaml: unknown backbone '{name}' in run.backbones; allowed: {', '.join(known)}")
    return RunSelection(dataset, tuple(map(str, categories)), tuple(map(str, backbones)))


@dataclass(frozen=True)
class BackboneSettings:
    name: str
    arch: str  # "<library>/<model name>", e.g. "timm/tf_efficientnet_lite2"
    weights: str  # "pretrained", "random", or a path to a weights file
    layers: tuple[str, ...]
    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    target_dim: int
    interpolation: str = "bilinear"  # resize filter: CLIP was trained on bicubic resizing
    train_fraction: float | None = None  # overrides extract.train_fraction for this backbone


INTERPOLATIONS = ("bilinear", "bicubic")


def _share(value, where: str, zero_allowed: bool, hint: str) -> float:
    """A number in (0, 1], or in [0, 1) when ``zero_allowed`` (0 then means 'none')."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (0.0 <= value < 1.0 if zero_allowed else 0.0 < value <= 1.0):
        raise UsageError(f"params.yaml: '{where}' must be in {'[0, 1)' if zero_allowed else '(0, 1]'}, got {value!r}; {hint}")
    return float(value)


def _fraction(value, where: str) -> float:
    return _share(value, where, False, "e.g. 0.25 trains on a quarter of train/good")


def backbone_settings(params: dict, name: str) -> BackboneSettings:
    backbones = _section(params, "backbones")
    if name not in backbones:
        raise UsageError(f"unknown backbone '{name}'; allowed: {', '.join(sorted(backbones))} (params.yaml 'backbones:')")
    entry = backbones[name]
    where = f"backbones.{name}"
    if not isinstance(entry, dict):
        raise UsageError(f"params.yaml: '{where}' must be a mapping of settings")
    layers = _get(entry, where, "layers", list)
    if not layers or not all(isinstance(x, str) for x in layers):
        raise UsageError(f"params.yaml: '{where}.layers' must list module names, e.g. [blocks.2, blocks.4]")
    mean = _get(entry, where, "mean", list)
    std = _get(entry, where, "std", list)
    for key, vec in (("mean", mean), ("std", std)):
        if len(vec) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vec):
            raise UsageError(f"params.yaml: '{where}.{key}' must be three numbers (R, G, B)")
    if any(v <= 0 for v in std):
        raise UsageError(f"params.yaml: '{where}.std' must be positive")
    resize = _get(entry, where, "resize", int)
    crop = _get(entry, where, "crop", int)
    if not 32 <= crop <= resize:
        raise UsageError(f"params.yaml: '{where}': need 32 <= crop <= resize, got crop={crop}, resize={resize}")
    target_dim = _get(entry, where, "target_dim", int)
    if target_dim < 1:
        raise UsageError(f"params.yaml: '{where}.target_dim' must be a positive integer, got {target_dim}")
    interpolation = entry.get("interpolation", "bilinear")
    if interpolation not in INTERPOLATIONS:
        raise UsageError(f"params.yaml: '{where}.interpolation' must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    fraction = entry.get("train_fraction")
    return BackboneSettings(
        name=name,
        arch=_get(entry, where, "arch", str),
        weights=str(_get(entry, where, "weights", str)),
        layers=tuple(layers),
        resize=resize,
        crop=crop,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        target_dim=target_dim,
        interpolation=interpolation,
        train_fraction=None if fraction is None else _fraction(fraction, f"{where}.train_fraction"),
    )


@dataclass(frozen=True)
class ExtractSettings:
    batch_size: int
    num_workers: int
    train_fraction: float  # share of train/good used; a backbone's own train_fraction wins
    channels_last: bool = False  # NHWC tensors: faster convolutions on some CPUs


def extract_settings(params: dict) -> ExtractSettings:
    section = _section(params, "extract")
    batch_size = _get(section, "extract", "batch_size", int)
    num_workers = _get(section, "extract", "num_workers", int)
    if batch_size < 1 or num_workers < 0:
        raise UsageError("params.yaml: 'extract.batch_size' must be >= 1 and 'extract.num_workers' >= 0")
    channels_last = section.get("channels_last", False)
    if not isinstance(channels_last, bool):
        raise UsageError(f"params.yaml: 'extract.channels_last' must be true or false, got {channels_last!r}")
    return ExtractSettings(batch_size, num_workers, _fraction(section.get("train_fraction", 1.0), "extract.train_fraction"), channels_last)


@dataclass(frozen=True)
class CoresetSettings:
    ratio: float
    projection_dim: int
    seed: int
    holdout_fraction: float  # training images kept out of the bank to set the threshold


def coreset_settings(params: dict) -> CoresetSettings:
    section = _section(params, "coreset")
    ratio = float(_get(section, "coreset", "ratio", (int, float)))
    if not (0.0 < ratio <= 1.0) or not math.isfinite(ratio):
        raise UsageError(f"params.yaml: 'coreset.ratio' must be in (0, 1], got {ratio}; e.g. 0.1 keeps 10% of the patches")
    projection_dim = _get(section, "coreset", "projection_dim", int)
    if projection_dim < 1:
        raise UsageError(f"params.yaml: 'coreset.projection_dim' must be a positive integer, got {projection_dim}")
    holdout = _share(section.get("holdout_fraction", 0.0), "coreset.holdout_fraction", True, "0 disables the threshold")
    return CoresetSettings(ratio, projection_dim, _get(section, "coreset", "seed", int), holdout)


@dataclass(frozen=True)
class EvaluateSettings:
    blur_sigma: float
    query_batch: int
    reweight_neighbours: int  # b of PatchCore Eq. 7; 0 or 1 turns the reweighting off
    threshold_quantile: float  # of the held-out nominal image scores
    bootstrap: int  # resamples for the confidence intervals
    max_fpr: float  # AUPRO integration limit
    seed: int
    faiss_threads: int  # 0: faiss's default (all cores)
    approximate_above: int  # banks with more patches use HNSW; 0: always exact


def evaluate_settings(params: dict) -> EvaluateSettings:
    section = _section(params, "evaluate")
    sigma = float(_get(section, "evaluate", "blur_sigma", (int, float)))
    if sigma < 0 or not math.isfinite(sigma):
        raise UsageError(f"params.yaml: 'evaluate.blur_sigma' must be >= 0, got {sigma}")
    query_batch = _get(section, "evaluate", "query_batch", int)
    if query_batch < 1:
        raise UsageError(f"params.yaml: 'evaluate.query_batch' must be >= 1, got {query_batch}")
    b = _get(section, "evaluate", "reweight_neighbours", int)
    q = float(_get(section, "evaluate", "threshold_quantile", (int, float)))
    n_boot = _get(section, "evaluate", "bootstrap", int)
    max_fpr = float(_get(section, "evaluate", "max_fpr", (int, float)))
    if b < 0 or not 0.0 < q <= 1.0 or n_boot < 0 or not 0.0 < max_fpr <= 1.0:
        raise UsageError(
            "params.yaml: need evaluate.reweight_neighbours >= 0, 0 < evaluate.threshold_quantile <= 1, "
            f"evaluate.bootstrap >= 0 and 0 < evaluate.max_fpr <= 1; got {b}, {q}, {n_boot}, {max_fpr}"
        )
    threads = section.get("faiss_threads", 0)
    approximate = section.get("approximate_above", 0)
    for key, value in (("faiss_threads", threads), ("approximate_above", approximate)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"params.yaml: 'evaluate.{key}' must be an integer >= 0, got {value!r}")
    return EvaluateSettings(sigma, query_batch, b, q, n_boot, max_fpr, _get(section, "evaluate", "seed", int), threads, approximate)


def dataset_spec(params: dict, name: str) -> DatasetSpec:
    section = _section(params, "download")
    where = f"download.{name}"
    entry = section.get(name)
    if not isinstance(entry, dict):
        raise UsageError(f"params.yaml: unknown dataset '{name}'; allowed: {', '.join(sorted(section))}")
    source = entry.get("source")
    if source not in SOURCES:
        raise UsageError(f"params.yaml: '{where}.source' must be one of {', '.join(SOURCES)}, got {source!r}")
    spec = DatasetSpec(name, source, entry.get("path"), entry.get("url"), entry.get("sha256"))
    for key in ("path", "url", "sha256"):
        value = getattr(spec, key)
        if value is not None and not isinstance(value, str):
            raise UsageError(f"params.yaml: '{where}.{key}' must be a string, got {value!r}")
    if source in ("archive", "folder") and not spec.path:
        raise UsageError(f"params.yaml: '{where}.path' is required for source '{source}': the local {source} to read")
    if source == "url" and not (spec.url and spec.sha256):
        raise UsageError(f"params.yaml: '{where}' needs 'url' and its 'sha256' for source 'url'; the checksum is checked before use")
    if spec.sha256 is not None and (len(spec.sha256) != 64 or any(c not in "0123456789abcdef" for c in spec.sha256.lower())):
        raise UsageError(f"params.yaml: '{where}.sha256' must be 64 hexadecimal digits")
    return spec
