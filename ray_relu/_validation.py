"""Argument checks shared by every public entry point.

Each check raises ``ValueError`` (or ``TypeError`` for a wrong kind of object) whose
message names the argument, says what was received and what is allowed, in the
manner of scikit-learn's parameter validation.
"""

from __future__ import annotations

import numbers
from typing import Any, Iterable

import numpy as np


def check_int(name: str, value: Any, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """Return ``value`` as a Python int, or raise if it is not an integer in range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r} "
                         f"of type {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {value}")
    return value


def check_float(name: str, value: Any, *, minimum: float | None = None,
                strictly_positive: bool = False) -> float:
    """Return ``value`` as a finite float, or raise naming what was wrong."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r} "
                         f"of type {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if strictly_positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; otherwise list the allowed values."""
    allowed = tuple(allowed)
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {options}; got {value!r}")
    return value


def check_array(name: str, value: Any, shape: tuple[int | None, ...],
                *, dtype: Any = np.float64) -> np.ndarray:
    """Return ``value`` as a finite array of ``shape`` (``None`` matches any length).

    The message names the argument and the expected shape, e.g.
    ``w must have shape (d,) = (10,), got (3,)``.
    """
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array, got {type(value).__name__}: "
                         f"{exc}") from None
    expected = "(" + ", ".join("any" if s is None else str(s) for s in shape) + \
               ("," if len(shape) == 1 else "") + ")"
    if arr.ndim != len(shape) or any(s is not None and s != a
                                     for s, a in zip(shape, arr.shape)):
        raise ValueError(f"{name} must have shape {expected}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} must be finite, got {bad} NaN or inf value(s)")
    return arr


def parse_key_values(items: Iterable[str], what: str) -> dict[str, Any]:
    """``["k=5", "norm=max"]`` as ``{"k": 5, "norm": "max"}``: each value is read as JSON
    where it is one (numbers, true/false, null, lists), else kept as a string. An item
    without ``=`` or a key raises a ValueError naming ``what``."""
    import json
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} must be KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params
