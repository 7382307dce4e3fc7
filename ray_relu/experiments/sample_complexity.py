"""Experiment 2: sample complexity, a phase transition at a constant n/d.

What it measures: for several dimensions d and a grid of ratios n/d, the fraction of
independent planted problems (``trials`` data sets, each with its own ``w*``) on
which SGD from the moment initialization recovers ``w*``: ``rel_error < success_tol``
(1e-6) within ``iterations`` steps. For each d, the *threshold* is the n/d at which the
success probability first reaches 1/2 (linear interpolation on the grid).

Criterion (``holds``): for every d the success probability is 1 at the largest ratio
and 0 at the smallest, and the thresholds of the different d lie within
``drift_tol`` of each other (the transition does not drift with d).

Notes. Trial ``i`` uses the same data seed for every n, so for a given d the data sets
of increasing n are nested (common random numbers: smoother curves, same marginal
law). Success is within a budget: just above the transition gradient descent is slow
(the smallest curvature of the loss near ``w*`` vanishes as n/d approaches the
threshold), so a larger budget moves the threshold slightly down, but by the same
amount for every d.

Engine: the single-process reference (:func:`ray_relu.reference.sgd`; it computes the
iterates of ``fit`` exactly). Ray adds nothing to one tiny fit, but the grid points
are independent, so with ``parallel=True`` each runs as a Ray task (on a cluster the
sweep spreads over all nodes).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pyarrow as pa

from .._validation import check_float, check_int
from ..models import PlantedReLU
from . import analysis, plotting
from .result import ExperimentResult
from .runs import derived_seed, history, parallel_map
from .tables import column

NAME = "sample_complexity"
DEFAULT_RATIOS = (0.5, 1.0, 1.5, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5, 4.0, 6.0, 8.0)


def run_grid_point(d: int, n: int, trials: int, iterations: int, tol: float,
                   batch_fraction: float | None, seed: int) -> list[dict]:
    """All trials of one (d, n): final ``rel_error`` and iterations of each (one job)."""
    out = []
    for trial in range(trials):
        data_seed = derived_seed(seed, d, trial)
        batch = None if batch_fraction is None else max(1, math.ceil(batch_fraction * n))
        h = history(PlantedReLU(d, n, seed=data_seed), engine="reference", codec="fp64",
                    workers=1, batch_size=batch, iterations=iterations, tol=tol, seed=seed)
        err = column(h, "rel_error")
        out.append({"trial": trial, "data_seed": data_seed, "final_rel_error": float(err[-1]),
                    "iterations": int(column(h, "iteration")[-1])})
    return out


def sample_complexity(*, dims: Sequence[int] = (25, 50, 100, 200),
                      ratios: Sequence[float] = DEFAULT_RATIOS, trials: int = 10,
                      iterations: int = 3000, success_tol: float = 1e-6,
                      batch_fraction: float | None = None, drift_tol: float = 0.5,
                      parallel: bool = False, seed: int = 0) -> ExperimentResult:
    """Success probability of recovery against n/d for each d (see the module docstring).

    Parameters
    ----------
    dims : the dimensions d.
    ratios : the grid of n/d (strictly increasing); ``n = max(1, round(ratio * d))``.
    trials : independent problems per grid point.
    iterations, success_tol : budget, and the ``rel_error`` that counts as recovery.
    batch_fraction : mini-batch size as a fraction of n (None: full batch).
    drift_tol : how far apart (in n/d) the thresholds of different d may be.
    parallel : run each grid point as a Ray task.
    seed : seed of the data seeds and of the batch draws.
    """
    dims = [check_int("d", d, minimum=1) for d in dims]
    ratios = [check_float("ratio", r, strictly_positive=True) for r in ratios]
    if not dims or len(ratios) < 2 or np.any(np.diff(ratios) <= 0):
        raise ValueError("dims must be non-empty and ratios strictly increasing with at "
                         f"least 2 values; got dims={dims}, ratios={ratios}")
    trials = check_int("trials", trials, minimum=1)
    success_tol = check_float("success_tol", success_tol, strictly_positive=True)
    if batch_fraction is not None:
        batch_fraction = check_float("batch_fraction", batch_fraction, strictly_positive=True)
        if batch_fraction > 1:
            raise ValueError(f"batch_fraction must be in (0, 1], got {batch_fraction}")
    grid = [(d, r, max(1, int(round(r * d)))) for d in dims for r in ratios]
    jobs = [(d, n, trials, iterations, success_tol, batch_fraction, seed) for d, _, n in grid]
    outcomes = parallel_map(run_grid_point, jobs, parallel=parallel)
    rows, trial_rows = [], []
    for (d, r, n), results in zip(grid, outcomes):
        errors = np.array([o["final_rel_error"] for o in results])
        success = errors < success_tol
        rows.append({"d": d, "n_over_d": r, "n": n, "trials": trials,
                     "successes": int(success.sum()), "success_probability": float(success.mean()),
                     "median_final_rel_error": float(np.median(errors)),
                     "median_iterations": float(np.median([o["iterations"] for o in results]))})
        trial_rows += [{"d": d, "n_over_d": r, "n": n, **o, "success": bool(s)}
                       for o, s in zip(results, success)]
    thresholds = {d: analysis.first_crossing(
        ratios, [row["success_probability"] for row in rows if row["d"] == d], 0.5)
        for d in dims}
    for row in rows:
        row["threshold_n_over_d"] = thresholds[row["d"]]
    table = pa.Table.from_pylist(rows)
    holds = _holds(table, dims, thresholds, drift_tol)
    title = (f"Recovery (rel_error < {success_tol:g} within {iterations} iterations), "
             f"{trials} problems per point")
    return ExperimentResult(
        name=NAME, table=table, curves=pa.Table.from_pylist(trial_rows),
        figure=plotting.figure_of(PANELS, table, pa.Table.from_pylist(trial_rows), title),
        claim=claim(table, dims, thresholds), holds=holds,
        params={"dims": dims, "ratios": ratios, "trials": trials, "iterations": iterations,
                "success_tol": success_tol, "batch_fraction": batch_fraction,
                "drift_tol": drift_tol, "engine": "reference", "seed": seed})


def _holds(table: pa.Table, dims, thresholds: dict, drift_tol: float) -> bool:
    p, ds = column(table, "success_probability"), column(table, "d")
    ends = all(p[ds == d][-1] == 1.0 and p[ds == d][0] == 0.0 for d in dims)
    values = np.array(list(thresholds.values()))
    return bool(ends and np.all(np.isfinite(values)) and np.ptp(values) <= drift_tol)


def claim(table: pa.Table, dims, thresholds: dict) -> str:
    """The measured statement of experiment 2, from its table and thresholds."""
    ratios = np.unique(column(table, "n_over_d"))
    by_ratio = [column(table, "success_probability")[column(table, "n_over_d") == r]
                for r in ratios]
    # Largest ratio up to which every problem failed, smallest from which all succeeded.
    none = np.cumprod([np.all(p == 0.0) for p in by_ratio]).astype(bool)
    every = np.cumprod([np.all(p == 1.0) for p in by_ratio][::-1])[::-1].astype(bool)
    below = ratios[none].max() if none.any() else float("nan")
    above = ratios[every].min() if every.any() else float("nan")
    t = ", ".join(f"{thresholds[d]:.2f} (d={d})" for d in dims)
    values = np.array(list(thresholds.values()))
    return (f"Recovery failed on every problem up to n/d = {below:g} and succeeded on every "
            f"problem from n/d = {above:g}; the 50% point sits at n/d = {t}, a spread of "
            f"{np.ptp(values):.2f} across a {max(dims) // min(dims)}x range of d.")


def _plot_per_d(ax, table: pa.Table, name: str) -> None:
    """One line of column ``name`` against n/d for each d."""
    ds = column(table, "d")
    for d in np.unique(ds):
        mask = ds == d
        ax.plot(column(table, "n_over_d")[mask], column(table, name)[mask],
                "o-", ms=3, label=f"d={d}")


def _draw_success(ax, table: pa.Table, curves: pa.Table) -> None:
    _plot_per_d(ax, table, "success_probability")
    ax.axhline(0.5, color="grey", lw=0.6, ls=":")
    plotting.finish(ax, "n / d", "P(rel_error < tol)", "success probability vs n/d",
                    logy=False)


def _draw_errors(ax, table: pa.Table, curves: pa.Table) -> None:
    _plot_per_d(ax, table, "median_final_rel_error")
    plotting.finish(ax, "n / d", "median final rel_error", "final error vs n/d")


PANELS = (_draw_success, _draw_errors)
