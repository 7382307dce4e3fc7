"""Experiment 5: with label noise, geometric convergence down to a floor that scales with sigma.

What it measures: the same planted problem with Gaussian label noise of standard
deviation sigma (same ``w*``, same inputs, only the noise level changes), fitted by
mini-batch SGD with the default constant step for a fixed budget. For each sigma: the
*floor*, the median ``rel_error`` over the last ``tail`` fraction of the iterations
(:func:`~ray_relu.experiments.analysis.error_floor`); the geometric rate on the way
down (:func:`~ray_relu.experiments.analysis.geometric_rate`, on the part of the
curve above twice the floor); and ``floor / sigma``. Across the noisy runs we fit
``floor ~ sigma**a`` on a log-log scale (:func:`~ray_relu.experiments.analysis.loglog_slope`).

Criterion (``holds``): the exponent ``a`` is within 0.2 of 1 (the floor is
proportional to sigma), and the noiseless run (if any) ends at least 100x below the
smallest noisy floor.

Engine: Ray by default with the exact ``fp64`` codec; ``engine="reference"`` gives the
same iterates in one process.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa

from .._validation import check_float, check_int
from . import analysis, plotting
from .result import ExperimentResult
from .runs import ALGORITHM_COLUMNS, DEFAULT_BATCH, batch_rows, history, planted
from .tables import column, stack, tagged

NAME = "noise"
EXPONENT_TOL = 0.2
NOISELESS_MARGIN = 100.0
FLOOR_MARGIN = 2.0   # the geometric phase of a noisy run ends at 2x its floor


def noise(*, d: int = 100, n_over_d: float = 8.0,
          sigmas: Sequence[float] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1), workers: int = 2,
          batch_size: int | None = DEFAULT_BATCH, iterations: int = 600, tail: float = 0.25,
          engine: str = "ray", seed: int = 0) -> ExperimentResult:
    """Error floor against label-noise level (see the module docstring).

    Parameters
    ----------
    d, n_over_d : problem size (``n = round(n_over_d * d)``).
    sigmas : label-noise standard deviations (>= 0; 0 is the realizable reference).
    workers : Ray workers K.
    batch_size : rows per iteration over all workers; ``-1`` (default) means ``n // 4``,
        None full batch.
    iterations : budget of every run (no early stop: the floor needs the tail).
    tail : fraction of the run the floor is the median of.
    engine : ``"ray"`` or ``"reference"`` (same iterates).
    seed : seed of the problem and of the batch draws.
    """
    sigmas = [check_float("sigma", s, minimum=0.0) for s in sigmas]
    if not any(s > 0 for s in sigmas):
        raise ValueError(f"sigmas must contain at least one positive value, got {sigmas}")
    iterations = check_int("iterations", iterations, minimum=1)
    tail = check_float("tail", tail, strictly_positive=True)
    rows, curves = [], []
    for sigma in sigmas:
        problem = planted(d, n_over_d, noise=sigma, seed=seed)
        batch = batch_rows(batch_size, problem.n, 4)
        h = history(problem, engine=engine, codec="fp64", workers=workers, batch_size=batch,
                    iterations=iterations, tol=0.0, seed=seed)
        t, err = column(h, "iteration"), column(h, "rel_error")
        floor = analysis.error_floor(err, tail=tail)
        rows.append({"sigma": sigma, "d": problem.d, "n": problem.n,
                     "batch_size": problem.n if batch is None else batch,
                     "floor": floor, "floor_over_sigma": floor / sigma if sigma > 0 else None,
                     "final_rel_error": float(err[-1]),
                     "iterations_to_floor": analysis.first_reach(t, err, 2 * floor),
                     **analysis.geometric_rate(
                         t, err, until=FLOOR_MARGIN * floor if sigma > 0 else None).as_dict()})
        curves.append(tagged(h, ALGORITHM_COLUMNS, sigma=sigma))
    table = pa.Table.from_pylist(rows)
    exponent, r2 = _exponent(table)
    curves_table = stack(curves)
    title = (f"Label noise: d={rows[0]['d']}, n={rows[0]['n']}, batch {rows[0]['batch_size']}, "
             f"K={workers}, fp64 ({engine})")
    return ExperimentResult(
        name=NAME, table=table, curves=curves_table,
        figure=plotting.figure_of(PANELS, table, curves_table, title),
        claim=claim(table, exponent, r2), holds=_holds(table, exponent),
        params={"d": d, "n_over_d": n_over_d, "sigmas": sigmas, "workers": workers,
                "batch_size": batch_size, "iterations": iterations, "tail": tail,
                "engine": engine, "seed": seed})


def _exponent(table: pa.Table) -> tuple[float, float]:
    sigma, floor = column(table, "sigma"), column(table, "floor")
    noisy = sigma > 0
    return analysis.loglog_slope(sigma[noisy], floor[noisy])


def _holds(table: pa.Table, exponent: float) -> bool:
    sigma, floor = column(table, "sigma"), column(table, "floor")
    ok = abs(exponent - 1.0) <= EXPONENT_TOL
    if np.any(sigma == 0):
        ok = ok and floor[sigma == 0].max() * NOISELESS_MARGIN <= floor[sigma > 0].min()
    return bool(ok)


def claim(table: pa.Table, exponent: float, r2: float) -> str:
    """The measured statement of experiment 5, from its table."""
    rows = table.to_pylist()
    noisy = [r for r in rows if r["sigma"] > 0]
    ratios = [r["floor_over_sigma"] for r in noisy]
    rates = np.array([r["rate"] for r in noisy], dtype=float)
    text = (f"With label noise the error fell geometrically (rates "
            f"{np.nanmin(rates):.3f}-{np.nanmax(rates):.3f} per iteration) to a floor growing "
            f"like sigma^{exponent:.2f} (R^2 {r2:.3f}) over "
            f"sigma = {noisy[0]['sigma']:g}..{noisy[-1]['sigma']:g}: floor/sigma = "
            f"{min(ratios):.2f}-{max(ratios):.2f}")
    clean = [r for r in rows if r["sigma"] == 0]
    if clean:
        text += f", against {clean[0]['floor']:.1e} without noise"
    return text + "."


def _draw_curves(ax, table: pa.Table, curves: pa.Table) -> None:
    sig = column(curves, "sigma")
    for row in table.to_pylist():
        mask = sig == row["sigma"]
        line, = ax.plot(column(curves, "iteration")[mask], column(curves, "rel_error")[mask],
                        lw=1.0, label=f"sigma={row['sigma']:g}")
        if row["sigma"] > 0:
            ax.axhline(row["floor"], color=line.get_color(), ls=":", lw=0.8)
    plotting.finish(ax, "iteration", "rel_error", "error vs iteration (dotted: floor)")


def _draw_floor(ax, table: pa.Table, curves: pa.Table) -> None:
    sigma, floor = column(table, "sigma"), column(table, "floor")
    noisy = sigma > 0
    ax.plot(sigma[noisy], floor[noisy], "o", label="measured floor")
    exponent, _ = _exponent(table)
    if np.isfinite(exponent):
        s = sigma[noisy]
        c = np.exp(np.mean(np.log(floor[noisy]) - exponent * np.log(s)))
        ax.plot(s, c * s ** exponent, "--", label=f"fit: sigma^{exponent:.2f}")
    plotting.finish(ax, "label noise sigma", "error floor", "floor vs noise", logx=True)


PANELS = (_draw_curves, _draw_floor)
