"""Experiment 3: QSGD keeps the geometric convergence of SGD.

What it measures: one realizable planted problem, K workers, mini-batch SGD from the
moment initialization with each codec (fp32, fp16 and QSGD with s levels, s from 1 to
sqrt(d)), in master and in all-to-all mode, each with the default step (derived from
the codec's variance bound, never tuned per run). For every run: the fitted geometric
rate and its R^2 (:func:`~ray_relu.experiments.analysis.geometric_rate`), the
iterations to reach ``target``, the final error, and the *gradient bytes* per
iteration counted from the real encoded messages: uplink in master mode, peer traffic
in all-to-all (master mode's downlink ships the full-precision ``w`` whatever the
codec, so it measures the downlink codec, not the gradient codec). ``bits_per_coord``
is the size of one gradient message in bits per coordinate, header included.

Criterion (``holds``): every QSGD run reaches ``target`` with R^2 > 0.95, and each
all-to-all run follows its master twin's trajectory exactly (same codec seeds).

Why fp16 carries a scale: the plain cast (spec ``"fp16:none"``) stalls once gradient
coordinates fall below half's subnormal range (about 6e-8), a floor near 1e-6 for
full batches at d = 400..1000. The default fp16 codec, like QSGD, scales each message.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pyarrow as pa

from .._validation import check_choice, check_float
from ..settings import MODES
from . import analysis, plotting
from .codec_specs import parse_codecs
from .result import ExperimentResult
from .runs import (BYTE_COLUMNS, DEFAULT_BATCH, GRADIENT_BYTES, batch_rows, per_iteration,
                   planted, ray_fit)
from .tables import column, stack, tagged

NAME = "quantization"
R2_MIN = 0.95
DEFAULT_CODECS = ("fp32", "fp16", "qsgd:1", "qsgd:2", "qsgd:4", "qsgd:16", "qsgd:sqrt")


def quantization(*, d: int = 400, n_over_d: float = 8.0, workers: int = 4,
                 batch_size: int | None = DEFAULT_BATCH, codecs: Sequence[str] = DEFAULT_CODECS,
                 modes: Sequence[str] = MODES, iterations: int = 1500, tol: float = 1e-8,
                 target: float = 1e-6, seed: int = 0) -> ExperimentResult:
    """Rate, final error and bytes of each codec in each mode (see the module docstring).

    Parameters
    ----------
    d, n_over_d : problem size (``n = round(n_over_d * d)``).
    workers : Ray workers K.
    batch_size : rows per iteration over all workers; ``-1`` (default) means ``n // 2``,
        None full batch.
    codecs : codec specs (:mod:`~ray_relu.experiments.codec_specs`).
    modes : a subset of ``("master", "all-to-all")``.
    iterations, tol : budget and stopping ``rel_error`` of each run.
    target : the ``rel_error`` whose first-reach iteration is reported.
    seed : seed of the problem, the batches and the quantization.
    """
    problem = planted(d, n_over_d, seed=seed)
    batch = batch_rows(batch_size, problem.n, 2)
    choices = parse_codecs(codecs, problem.d)
    modes = [check_choice("mode", m, MODES) for m in modes]
    if not modes:
        raise ValueError("modes must not be empty")
    target = check_float("target", target, strictly_positive=True)
    rows, curves, trajectories = [], [], {}
    for choice in choices:
        for mode in modes:
            result = ray_fit(problem, codec=choice.codec, codec_options=choice.options,
                             workers=workers, mode=mode, batch_size=batch,
                             iterations=iterations, tol=tol, seed=seed)
            h = result.history
            t, err = column(h, "iteration"), column(h, "rel_error")
            trajectories[choice.label, mode] = err
            grad = per_iteration(h, GRADIENT_BYTES[mode])
            messages = workers if mode == "master" else workers * (workers - 1)
            rows.append({
                "codec": choice.label, "levels": choice.levels, "mode": mode,
                "workers": workers, "batch_size": problem.n if batch is None else batch,
                "step_size": result.step_size, "iterations": result.iterations,
                "converged": result.converged, "final_rel_error": result.rel_error,
                "iterations_to_target": analysis.first_reach(t, err, target),
                **analysis.geometric_rate(t, err).as_dict(),
                **{f"{c}_per_iter": per_iteration(h, c) for c in BYTE_COLUMNS},
                "gradient_bytes_per_iter": grad,
                "bits_per_coord": 8 * grad / messages / problem.d if messages else float("nan"),
                "same_trajectory_as_master": _same(trajectories, choice.label, mode)})
            curves.append(tagged(h, codec=choice.label, mode=mode))
    _add_ratio_to_first(rows)
    table = pa.Table.from_pylist(rows)
    curves_table = stack(curves)
    holds = all(not math.isnan(r["iterations_to_target"]) and r["r2"] > R2_MIN
                for r in rows if r["levels"] is not None) and \
        all(r["same_trajectory_as_master"] is not False for r in rows)
    title = (f"Codecs: d={problem.d}, n={problem.n}, K={workers}, batch "
             f"{problem.n if batch is None else batch}")
    return ExperimentResult(
        name=NAME, table=table, curves=curves_table,
        figure=plotting.figure_of(PANELS, table, curves_table, title),
        claim=claim(table, target), holds=bool(holds),
        params={"d": problem.d, "n": problem.n, "workers": workers, "batch_size": batch,
                "codecs": list(codecs), "modes": modes, "iterations": iterations,
                "tol": tol, "target": target, "engine": "ray", "seed": seed})


def _same(trajectories: dict, label: str, mode: str) -> bool | None:
    """For an all-to-all run: does it equal the master run of the same codec exactly?"""
    twin = trajectories.get((label, "master"))
    if mode == "master" or twin is None:
        return None
    mine = trajectories[label, mode]
    return bool(mine.shape == twin.shape and np.array_equal(mine, twin))


def _add_ratio_to_first(rows: list[dict]) -> None:
    """``bytes_vs_first``: gradient bytes per iteration relative to the first codec's
    run in the same mode (fp32 with the default codec list)."""
    base = {}
    for r in rows:
        base.setdefault(r["mode"], r["gradient_bytes_per_iter"])
        r["bytes_vs_first"] = r["gradient_bytes_per_iter"] / base[r["mode"]]


def claim(table: pa.Table, target: float) -> str:
    """The measured statement of experiment 3, from its table."""
    rows = table.to_pylist()
    q = [r for r in rows if r["levels"] is not None and r["mode"] == rows[0]["mode"]]
    first = rows[0]
    if not q:
        return (f"No QSGD codec was run: {first['codec']} contracted by {first['rate']:.3f} "
                f"per iteration and reached {target:g} in "
                f"{first['iterations_to_target']:.0f} iterations.")
    worst = max(q, key=lambda r: r["rate"])
    lowest = min(q, key=lambda r: r["bytes_vs_first"])
    same = [r["same_trajectory_as_master"] for r in rows
            if r["same_trajectory_as_master"] is not None]
    modes = "; all-to-all runs matched master runs exactly" if same and all(same) else \
        ("; some all-to-all runs differed from master" if same else "")
    return (f"Every QSGD run converged geometrically (R^2 >= "
            f"{min(r['r2'] for r in q):.3f}): {first['codec']} contracted by "
            f"{first['rate']:.3f} per iteration and reached {target:g} in "
            f"{first['iterations_to_target']:.0f} iterations, the slowest QSGD "
            f"({worst['codec']}) by {worst['rate']:.3f} in "
            f"{worst['iterations_to_target']:.0f}, while {lowest['codec']} sent "
            f"{1 / lowest['bytes_vs_first']:.0f}x fewer gradient bytes per iteration "
            f"({lowest['bits_per_coord']:.2f} bits per coordinate){modes}.")


def _draw_curves(ax, table: pa.Table, curves: pa.Table) -> None:
    codec, mode = column(curves, "codec"), column(curves, "mode")
    colors, labelled = plotting.colors_for(codec), set()
    for row in table.to_pylist():
        mask = (codec == row["codec"]) & (mode == row["mode"])
        label = None if row["codec"] in labelled else row["codec"]
        labelled.add(row["codec"])
        ax.plot(column(curves, "iteration")[mask], column(curves, "rel_error")[mask],
                ls=plotting.MODE_STYLE[row["mode"]][0], lw=1.1, color=colors[row["codec"]],
                label=label)
    plotting.finish(ax, "iteration", "rel_error",
                    "error vs iteration (solid master, dashed all-to-all)")


def _draw_tradeoff(ax, table: pa.Table, curves: pa.Table) -> None:
    for mode, marker in (("master", "o"), ("all-to-all", "s")):
        rows = [r for r in table.to_pylist() if r["mode"] == mode]
        if not rows:
            continue
        ax.scatter([r["bits_per_coord"] for r in rows],
                   [r["iterations_per_decade"] for r in rows], marker=marker, label=mode,
                   facecolors="none" if mode == "all-to-all" else None, edgecolors="C0")
        if mode == "master":
            for r in rows:
                ax.annotate(r["codec"].replace(" (sqrt d)", ""), (r["bits_per_coord"],
                            r["iterations_per_decade"]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
    plotting.finish(ax, "gradient bits per coordinate", "iterations per decade of error",
                    "speed vs message size", logx=True, logy=False)


def _draw_final(ax, table: pa.Table, curves: pa.Table) -> None:
    rows = table.to_pylist()
    labels = list(dict.fromkeys(r["codec"] for r in rows))
    x = np.arange(len(labels))
    for i, mode in enumerate(dict.fromkeys(r["mode"] for r in rows)):
        vals = {r["codec"]: r["final_rel_error"] for r in rows if r["mode"] == mode}
        ax.bar(x + 0.4 * i - 0.2, [vals.get(c, np.nan) for c in labels], width=0.4,
               label=mode)
    ax.set_xticks(x, [c.replace("qsgd ", "").replace(" (sqrt d)", "") for c in labels],
                  rotation=30, fontsize=7)
    plotting.finish(ax, "codec", "final rel_error", "final error per codec")


PANELS = (_draw_curves, _draw_tradeoff, _draw_final)
