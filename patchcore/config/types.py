"""The value types of the settings: frozen sections, numbers in ranges, devices and precisions.

Validators raise ValueError with the message the user sees (config.loader adds the key path).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StrictInt, StrictStr


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _number(value: object) -> float:
    # pydantic would turn true into 1.0; a switch where a number belongs is a mistake
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return float(value)


def _within(low: float, high: float, low_open: bool, high_open: bool, hint: str = ""):
    """A range check whose message spells the interval as the user would, e.g. (0, 1]."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(value: float) -> float:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (above and below):
            raise ValueError(f"must be in {interval}, got {value!r}{'; ' + hint if hint else ''}")
        return value

    return AfterValidator(check)


def _at_least(low: int):
    def check(value: int) -> int:
        if value < low:
            raise ValueError(f"must be an integer >= {low}, got {value!r}")
        return value

    return AfterValidator(check)


def at_most(high: int, why: str):
    """An upper bound on an integer setting that sizes memory or time; ``why`` is what the method needs."""

    def check(value: int) -> int:
        if value > high:
            raise ValueError(f"must be at most {high:,}, got {_short(value)}; {why}")
        return value

    return AfterValidator(check)


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"an integer of {len(text)} digits"


Real = Annotated[float, BeforeValidator(_number)]
# b of PatchCore Eq. 7: each image's score searches the b nearest bank patches of its m*
Neighbours = Annotated[
    StrictInt, _at_least(0), at_most(64, "Eq. 7's neighbourhood of m*; this project's default is 9, 0 turns it off")
]
# a count of bank patches (approximate_above): no bank that fits in memory has more
PatchCount = Annotated[StrictInt, _at_least(0), at_most(10**12, "a count of bank patches; 0 means never")]
# seeds feed numpy's and torch's generators and HDF5 attributes: the usual 32-bit range
Seed = Annotated[StrictInt, _at_least(0), at_most(2**32 - 1, "seeds are 32-bit (numpy, torch), e.g. 0")]
Positive = Annotated[StrictInt, _at_least(1)]
NonNegative = Annotated[StrictInt, _at_least(0)]
Share = Annotated[Real, _within(0, 1, True, False, "e.g. 0.25 trains on a quarter of train/good")]
HoldoutShare = Annotated[Real, _within(0, 1, False, True, "0 disables the threshold")]
Ratio = Annotated[Real, _within(0, 1, True, False, "e.g. 0.1 keeps 10% of the patches")]
Probability = Annotated[Real, _within(0, 1, True, False)]
NonNegativeReal = Annotated[Real, _within(0, math.inf, False, True)]
# tiles: the factor an image is resized by before it is cut; past 4 a pixel is only interpolated
Scale = Annotated[Real, _within(0, 4, True, False, "1 keeps the image's own pixels; 0.5 halves each side")]


def _device_name(value: str) -> str:
    head, colon, index = value.partition(":")
    if value in ("auto", "cpu", "cuda") or (head == "cuda" and colon and index.isdigit()):
        return value
    raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {value!r}")


# auto: CUDA where torch sees a GPU, else the CPU (resolved when the stage runs: core.devices)
Device = Annotated[StrictStr, AfterValidator(_device_name)]
Precision = Literal["float32", "bfloat16", "float16"]


def _positive_finite(value: float) -> float:
    if value <= 0:
        raise ValueError(f"must be a positive number (a patch distance), got {value!r}")
    return value


PositiveFinite = Annotated[Real, AfterValidator(_positive_finite)]
# Gaussian smoothing of the map in input pixels: beyond 64 px (a quarter of a 256 px input) it
# averages the whole map away, and scipy's kernel (4 sigma each side) outgrows any input
BlurSigma = Annotated[Real, _within(0, 64, False, False, "4 is the paper's; 0 turns smoothing off")]
