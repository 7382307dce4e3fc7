"""Experiment 1: mini-batch SGD from the moment initialization converges geometrically.

What it measures: for one realizable planted problem (no label noise) and several batch
sizes, the trajectory of ``rel_error = ||w_t - w*|| / ||w*||`` of SGD with the default
(derived, untuned) constant step, started at the moment initialization. A geometric
rate means ``log10 rel_error`` is a straight line in ``t``: we fit that line on the
geometric phase (:func:`~ray_relu.experiments.analysis.geometric_rate`) and report its
contraction factor per iteration, its R^2, the rates of the phase's two halves, and
the rows processed per decade of error (iterations per decade times batch size).

Criterion (``holds``): every batch size has a negative slope with R^2 > 0.95 and
reached the tolerance.

Engine: Ray by default, with the exact ``fp64`` codec, so this is plain distributed
SGD; ``engine="reference"`` gives the same iterates in one process.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa

from ..settings import resolve
from . import analysis, plotting
from .result import ExperimentResult
from .runs import ALGORITHM_COLUMNS, history, planted
from .tables import column, stack, tagged

NAME = "convergence"
R2_MIN = 0.95


def default_batch_sizes(d: int) -> tuple:
    """``(d/4, d, 4d, full)``: from small mini-batches to full-batch gradient descent."""
    return (max(2, d // 4), d, 4 * d, None)


def convergence(*, d: int = 200, n_over_d: float = 8.0,
                batch_sizes: Sequence[int | None] | None = None, workers: int = 2,
                iterations: int = 5000, tol: float = 1e-9, engine: str = "ray",
                seed: int = 0) -> ExperimentResult:
    """Fit the geometric rate of SGD for each batch size (see the module docstring).

    Parameters
    ----------
    d, n_over_d : problem size: ``n = round(n_over_d * d)`` samples in dimension ``d``.
    batch_sizes : rows per iteration over all workers; ``None`` in the list means full
        batch. Default :func:`default_batch_sizes`.
    workers : Ray workers K.
    iterations, tol : budget and target ``rel_error`` of each run.
    engine : ``"ray"`` or ``"reference"`` (same iterates).
    seed : seed of the problem and of the batch draws.
    """
    problem = planted(d, n_over_d, seed=seed)
    d, n = problem.d, problem.n
    sizes = list(default_batch_sizes(d) if batch_sizes is None else batch_sizes)
    if not sizes:
        raise ValueError("batch_sizes must not be empty")
    options = dict(codec="fp64", workers=workers, iterations=iterations, tol=tol, seed=seed)
    rows, curves = [], []
    for m in sizes:
        step = resolve(problem, batch_size=m, **options).step_size   # validates m too
        h = history(problem, engine=engine, batch_size=m, **options)
        t, err = column(h, "iteration"), column(h, "rel_error")
        fit = analysis.geometric_rate(t, err)
        rows_per_step = n if m is None else m
        rows.append({"batch_size": rows_per_step, "full_batch": m is None, "step_size": step,
                     "iterations": int(t[-1]), "final_rel_error": float(err[-1]),
                     "reached_tol": bool(err[-1] <= tol), **fit.as_dict(),
                     "rows_per_decade": fit.iterations_per_decade * rows_per_step})
        curves.append(tagged(h, ALGORITHM_COLUMNS, batch_size=rows_per_step))
    table = pa.Table.from_pylist(rows)
    curves_table = stack(curves)
    holds = all(r["slope"] < 0 and r["r2"] > R2_MIN and r["reached_tol"] for r in rows)
    title = f"SGD from the moment init: d={d}, n={n}, K={workers}, fp64 ({engine})"
    return ExperimentResult(
        name=NAME, table=table, curves=curves_table,
        figure=plotting.figure_of(PANELS, table, curves_table, title),
        claim=claim(table, d, n), holds=holds,
        params={"d": d, "n": n, "batch_sizes": sizes, "workers": workers,
                "iterations": iterations, "tol": tol, "engine": engine, "seed": seed})


def claim(table: pa.Table, d: int, n: int) -> str:
    """The measured statement of experiment 1, from its table."""
    r2 = column(table, "r2")
    rate, m = column(table, "rate"), column(table, "batch_size")
    order = np.argsort(m)
    return (f"Mini-batch SGD from the moment initialization (d={d}, n={n}, untuned "
            f"default step) converged geometrically for all {len(m)} batch sizes: "
            f"log10 rel_error is a straight line with R^2 >= {r2.min():.3f}, the "
            f"contraction per iteration going from {rate[order[0]]:.3f} (batch "
            f"{m[order[0]]}) to {rate[order[-1]]:.3f} (batch {m[order[-1]]}).")


def _draw_curves(ax, table: pa.Table, curves: pa.Table) -> None:
    m_all = column(curves, "batch_size")
    for row in table.to_pylist():
        mask = m_all == row["batch_size"]
        t, err = column(curves, "iteration")[mask], column(curves, "rel_error")[mask]
        label = "full" if row["full_batch"] else f"m={row['batch_size']}"
        line, = ax.plot(t, err, lw=1.2, label=f"{label}: rate {row['rate']:.3f}")
        span = np.arange(row["start"], row["stop"] + 1)
        ax.plot(span, 10 ** (row["intercept"] + row["slope"] * span), ls="--", lw=0.8,
                color=line.get_color())
    plotting.finish(ax, "iteration", "rel_error", "log error vs iteration (dashed: fit)")


def _draw_rates(ax, table: pa.Table, curves: pa.Table) -> None:
    m = column(table, "batch_size")
    order = np.argsort(m)
    ax.plot(m[order], column(table, "iterations_per_decade")[order], "o-",
            label="iterations per decade")
    ax.plot(m[order], column(table, "rows_per_decade")[order] / 1e3, "s--",
            label="rows per decade (thousands)")
    plotting.finish(ax, "batch size (rows per step)", "cost of one decade of error",
                    "cost per decade vs batch size", logx=True)


PANELS = (_draw_curves, _draw_rates)
