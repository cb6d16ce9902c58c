"""Reading the metrics JSON files back (summarize, the gate): anything else there is one line, not a traceback.

They are plain files in the work tree, edited, merged and checked out by people and tools, so
what summarize reads is checked for the fields it uses before any of it is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from patchcore.config import validate
from patchcore.errors import UsageError

Share = Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)] | None  # an AUROC, an AUPRO, a rate; null with a reason


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Features(_Open):
    patchsize: StrictInt
    border: StrictStr
    layer_weighting: StrictStr
    layer_dim: StrictInt | None = None


class AtThreshold(_Open):
    f1: Share = None
    false_reject_rate: Share = None


class MetricsRecord(_Open):
    """The fields of an evaluate record that the summary is made of."""

    weights: StrictStr
    features: Features
    image_auroc: Share = None
    pixel_auroc: Share = None
    aupro: Share = None
    ci95: dict = {}
    threshold_metrics: AtThreshold | None = None
    null_reasons: dict[str, StrictStr] = {}


def _load(path: Path, fix: str) -> object:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UsageError(f"{path}: cannot read metrics JSON ({exc.__class__.__name__}); {fix}") from None


def read_record(path: Path, fix: str) -> dict:
    """An evaluate metrics file, checked; returned whole (the summary keeps what it does not check)."""
    data = _load(path, fix)
    validate(MetricsRecord, data, f"{path} (a metrics file; {fix})")
    assert isinstance(data, dict)  # validated as an object above
    return data


def read_summary(path: Path, fix: str) -> dict:
    """A summary file for the gate: a JSON object (its numbers are compared where both files have them)."""
    data = _load(path, fix)
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a metrics summary is a JSON object, got {type(data).__name__}; {fix}")
    return data
