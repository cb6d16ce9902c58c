"""Where each stage reads and writes; dvc.yaml spells the same paths."""

from __future__ import annotations

from pathlib import Path

from patchcore.config.names import check_name
from patchcore.errors import UsageError


def _under(top: str, *names: str) -> Path:
    """top/name/...: every name a plain one, so the path stays inside top whatever the names say.

    The settings already refuse other names; this keeps a path built from any other source
    (a command-line argument, a file) from pointing a stage outside the project.
    """
    for name in names:
        try:
            check_name(name)
        except ValueError as exc:
            raise UsageError(f"{exc}; refusing to write outside {top}/") from None
    return Path(top).joinpath(*names)


def data_dir(dataset: str, category: str) -> Path:
    return _under("data", dataset, category)


def feature_dir(dataset: str, category: str, backbone: str) -> Path:
    return _under("features", dataset, category, backbone)


def metrics_file(dataset: str, category: str, backbone: str) -> Path:
    return _under("metrics", dataset, backbone, f"{category}.json")


def plots_dir(dataset: str, category: str, backbone: str) -> Path:
    return _under("plots", dataset, backbone, category)


def pictures_dir(dataset: str, category: str, backbone: str) -> Path:
    """evaluate's pictures of the user's images (maps.png, masks/): DVC-cached, so kept out of plots/,
    whose files git tracks and summarize reads (a folder dep holding them would differ on every fresh clone)."""
    return _under("pictures", dataset, backbone, category)


def extract_outputs(dataset: str, category: str, backbone: str) -> list[Path]:
    """What extract writes (dvc.yaml's outs, checked by a test)."""
    return [feature_dir(dataset, category, backbone) / f"{split}.h5" for split in ("train", "test")]


def evaluate_outputs(dataset: str, category: str, backbone: str) -> tuple[list[Path], list[Path]]:
    """What evaluate writes: files and folders (dvc.yaml's outs and plots, checked by a test)."""
    plots, pictures = plots_dir(dataset, category, backbone), pictures_dir(dataset, category, backbone)
    files = [metrics_file(dataset, category, backbone), feature_dir(dataset, category, backbone) / "model.json"]
    files += [plots / name for name in ("scores.csv", "regions.json", "roc.json", "pr.json", "pro.json", "roc.png")]
    return [*files, pictures / "maps.png"], [pictures / "masks"]


SUMMARY = Path("metrics") / "summary.json"
OVERLAY = (
    Path("plots") / "overlay"
)  # summarize: each curve of every backbone, per category (dvc.yaml's top-level plots)


def overlay_file(kind: str, category: str) -> Path:
    return _under(OVERLAY.as_posix(), kind, f"{category}.json")
