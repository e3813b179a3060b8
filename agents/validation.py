"""Validation of hyperparameters and settings: a clear error naming the owner, the argument
and the valid interval. Used by the heuristics and the learned policy's configuration."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any


def interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    def show(value: float) -> str:
        return "inf" if math.isinf(value) else f"{value:g}"

    return f"{'(' if low_open else '['}{show(low)}, {show(high)}{')' if high_open else ']'}"


def check_real(
    owner: str,
    name: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = True,
) -> float:
    """``value`` as a float if it is a real number in the interval, else a ValueError."""
    valid = interval(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{owner}: {name} must be a number in {valid}, got {value!r}")
    number = float(value)
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (above and below):  # also rejects NaN
        raise ValueError(f"{owner}: {name} must be in {valid}, got {value!r}")
    return number


def check_int(owner: str, name: str, value: Any, low: int, high: float = math.inf) -> int:
    """``value`` as an int if it is an integer in [low, high], else a ValueError."""
    valid = interval(low, high, low_open=False, high_open=math.isinf(high))
    if isinstance(value, bool) or not isinstance(value, Integral) or not low <= value <= high:
        raise ValueError(f"{owner}: {name} must be an integer in {valid}, got {value!r}")
    return int(value)
