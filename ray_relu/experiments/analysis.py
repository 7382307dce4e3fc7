"""Numbers extracted from error curves: geometric rates, floors, thresholds, slopes.

Pure numpy, no Ray and no plotting, so every experiment (and the tests) measures its
claims with the same few definitions:

- :func:`geometric_rate`: least-squares line through ``log10 rel_error`` against the
  iteration on the *geometric phase* (from the start until the error first comes within
  ``factor`` of the lowest error the run reached), with its R^2 and the rates of the
  phase's two halves (a straight line has equal halves);
- :func:`error_floor`: the median error over the last part of a run (the plateau a
  noisy run settles on);
- :func:`first_crossing`: where a sampled curve first reaches a level (linear
  interpolation), e.g. the n/d at which the success probability reaches 1/2;
- :func:`loglog_slope`: the exponent ``a`` in ``y ~ x**a``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from .._validation import check_float

MIN_POINTS = 3   # fewer points than this do not define a rate


@dataclass(frozen=True)
class RateFit:
    """A straight line through ``log10 rel_error`` on a run's geometric phase.

    ``rate`` is the fitted contraction factor per iteration (``10**slope``; < 1 means
    the error shrinks), ``iterations_per_decade`` is ``-1/slope``. ``rate_first_half``
    and ``rate_second_half`` come from separate fits on the two halves of the phase;
    ``half_mismatch = |slope_1 - slope_2| / |slope|`` is 0 for a perfectly straight
    line. ``start``/``stop`` are the iterations bounding the phase (inclusive). All
    fields are NaN when the phase has fewer than ``MIN_POINTS`` points.
    """

    rate: float
    slope: float
    intercept: float
    r2: float
    iterations_per_decade: float
    rate_first_half: float
    rate_second_half: float
    half_mismatch: float
    start: int
    stop: int

    def as_dict(self) -> dict:
        """The fields as a plain dict (for table rows)."""
        return asdict(self)


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``y = slope * x + intercept``; returns (slope, intercept, R^2)."""
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual ** 2)) / total if total > 0 else float("nan")
    return float(slope), float(intercept), r2


def _as_curve(iterations: Sequence[float], errors: Sequence[float]):
    t = np.asarray(iterations, dtype=float)
    e = np.asarray(errors, dtype=float)
    if t.ndim != 1 or t.shape != e.shape:
        raise ValueError(f"iterations and errors must be 1-D arrays of the same length, "
                         f"got shapes {t.shape} and {e.shape}")
    return t, e


def geometric_phase(errors: Sequence[float], *, factor: float = 10.0,
                    until: float | None = None) -> int:
    """Index of the last point of the geometric phase of an error curve.

    The phase runs from the first point until the error first drops to ``until``, by
    default ``factor`` times the lowest (finite, positive) error of the run. The
    default excludes the plateau of a run that stalls (round-off, fp16 underflow) and,
    for a run that stopped on a tolerance, its last ``log10(factor)`` decades; pass
    ``until`` (e.g. twice a measured noise floor) when the floor is known. Returns -1
    when no error is finite and positive.
    """
    factor = check_float("factor", factor, minimum=1.0)
    e = np.asarray(errors, dtype=float)
    good = np.isfinite(e) & (e > 0)
    if not good.any():
        return -1
    level = factor * e[good].min() if until is None else \
        check_float("until", until, strictly_positive=True)
    below = np.flatnonzero(good & (e <= level))
    return int(below[0]) if below.size else int(np.flatnonzero(good)[-1])


def geometric_rate(iterations: Sequence[float], errors: Sequence[float], *,
                   factor: float = 10.0, until: float | None = None) -> RateFit:
    """Fit ``log10 error = slope * t + intercept`` on the geometric phase.

    See :func:`geometric_phase` for the phase (``factor``, ``until``) and
    :class:`RateFit` for the fields.
    """
    t, e = _as_curve(iterations, errors)
    stop = geometric_phase(e, factor=factor, until=until)
    nan = float("nan")
    if stop + 1 < MIN_POINTS:
        return RateFit(nan, nan, nan, nan, nan, nan, nan, nan, 0, max(stop, 0))
    x, y = t[:stop + 1], np.log10(e[:stop + 1])
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    slope, intercept, r2 = _line(x, y)
    half = len(x) // 2
    if half >= MIN_POINTS - 1 and len(x) - half >= MIN_POINTS - 1:
        s1 = _line(x[:half + 1], y[:half + 1])[0]
        s2 = _line(x[half:], y[half:])[0]
    else:
        s1 = s2 = nan
    mismatch = abs(s1 - s2) / abs(slope) if slope != 0 else nan
    per_decade = -1.0 / slope if slope < 0 else float("inf")
    return RateFit(rate=10 ** slope, slope=slope, intercept=intercept, r2=r2,
                   iterations_per_decade=per_decade, rate_first_half=10 ** s1,
                   rate_second_half=10 ** s2, half_mismatch=mismatch,
                   start=int(x[0]), stop=int(x[-1]))


def error_floor(errors: Sequence[float], *, tail: float = 0.25) -> float:
    """Median of the last ``tail`` fraction of an error curve (at least one point)."""
    tail = check_float("tail", tail, strictly_positive=True)
    if tail > 1:
        raise ValueError(f"tail must be in (0, 1], got {tail}")
    e = np.asarray(errors, dtype=float)
    if e.size == 0:
        raise ValueError("errors must not be empty")
    count = max(1, int(math.ceil(tail * e.size)))
    return float(np.median(e[-count:]))


def first_reach(iterations: Sequence[float], errors: Sequence[float],
                target: float) -> float:
    """The first iteration whose error is ``<= target`` (NaN if never)."""
    t, e = _as_curve(iterations, errors)
    hit = np.flatnonzero(e <= target)
    return float(t[hit[0]]) if hit.size else float("nan")


def first_crossing(x: Sequence[float], y: Sequence[float], level: float) -> float:
    """The smallest ``x`` where the piecewise-linear curve ``y(x)`` reaches ``level``.

    ``x`` must be increasing. Returns ``x[0]`` if ``y[0] >= level`` already and NaN if
    the curve never reaches it.
    """
    xs, ys = _as_curve(x, y)
    if np.any(np.diff(xs) <= 0):
        raise ValueError("x must be strictly increasing")
    hit = np.flatnonzero(ys >= level)
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(xs[0])
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0))


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Exponent ``a`` and R^2 of the least-squares fit ``log y = a log x + b``.

    Only pairs with both values finite and positive are used (NaN with fewer than 2).
    """
    xs, ys = _as_curve(x, y)
    ok = np.isfinite(xs) & np.isfinite(ys) & (xs > 0) & (ys > 0)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    slope, _, r2 = _line(np.log(xs[ok]), np.log(ys[ok]))
    return slope, r2
