"""What a metrics record says when a number cannot be computed: the reason beside every null (pure dict code)."""

from __future__ import annotations

import numpy as np


def no_auroc(labels: np.ndarray) -> str | None:
    """Why image AUROC (and its bootstrap) cannot be computed on these labels, or None when it can."""
    if not len(labels):
        return "no test images: the category has train/good only"
    if not (labels == 1).any():
        return "no defective test images (a good-only category): AUROC needs good and defective images"
    if not (labels == 0).any():
        return "no good test images: AUROC needs good and defective images"
    return None


def null_paths(obj: object, prefix: str = "") -> list[str]:
    """Dotted paths of every null value in a record (list items by index)."""
    if obj is None:
        return [prefix]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    return [p for k, v in items for p in null_paths(v, f"{prefix}.{k}" if prefix else str(k))]


def null_reasons(record: dict, reasons: dict[str, str]) -> dict[str, str]:
    """A reason for every null in ``record``: its own, or that of the nearest enclosing key.

    A null with no reason at all is a bug in the code that made the record, not a user's error.
    """
    out = {}
    for path in null_paths(record):
        parts = path.split(".")
        for depth in range(len(parts), 0, -1):
            key = ".".join(parts[:depth])
            if key in reasons:
                out[path] = reasons[key]
                break
        else:
            raise AssertionError(f"a null without a reason: {path}")
    return out
