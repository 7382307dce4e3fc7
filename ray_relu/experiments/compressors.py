"""Experiment 6: the compressor zoo, with and without error feedback, on real bytes.

What it measures: one planted problem fitted on Ray to ``target`` with every
compressor (each at its default step size, K workers, one mode), once plain and once
wrapped in :class:`~ray_relu.codecs.ErrorFeedback`. Bytes are the real message sizes
the engine counted (every direction, start-up included). Per run: iterations, bytes and
*link time* to ``target``, and rel_error at equal iterations (the shortest run's
length) and at equal bytes (the smallest byte count any run needed). Link time is a
model, not a measurement: each round moves the busiest link's bytes at ``rate`` bits
a second (master: the head's link carries K gradients in and K updates out; all-to-all:
each worker's link carries its K - 1 peers' messages in), plus one link latency.

Two comparisons a reader should take away: which compressor reaches ``target`` with
the fewest bytes, and how much entropy coding (QSGD's Elias stream) saves over
fixed-width packing of the same quantizer (QSGD's dense fields, what GRACE-style
frameworks send).

Criterion (``holds``): QSGD with Elias coding reaches ``target`` with fewer bytes than
with dense coding, and error feedback lets every biased compressor (top-k, sign) reach
``target``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from .._validation import check_choice, check_float, check_int
from ..codecs import (QSGD, Codec, ErrorFeedback, FullPrecision, Natural, RandK, Sign,
                      TernGrad, TopK)
from ..settings import MODES
from . import analysis, plotting
from .result import ExperimentResult
from .runs import BYTE_COLUMNS, ray_fit, planted
from .tables import column, stack, tagged

NAME = "compressors"
# label -> codec for dimension d; the first is the baseline of the claim
ZOO: dict[str, Callable[[int], Codec]] = {
    "fp32": lambda d: FullPrecision("float32"),
    "qsgd s=16 elias": lambda d: QSGD(levels=16, coding="elias"),
    "qsgd s=16 dense": lambda d: QSGD(levels=16, coding="dense"),
    "top-5%": lambda d: TopK(ratio=0.05),
    "rand-25%": lambda d: RandK(ratio=0.25),
    "sign": lambda d: Sign(),
    "terngrad": lambda d: TernGrad(),
    "natural": lambda d: Natural(),
}
BIASED = ("top-5%", "sign")
LINK_RATES = {"10 mbit": 10e6, "100 mbit": 100e6, "1 gbit": 1e9}
LINK_LATENCY_S = 1e-4


def compressors(*, d: int = 200, n_over_d: float = 8.0, workers: int = 4,
                mode: str = "master", codecs: Sequence[str] = tuple(ZOO),
                feedback: Sequence[bool] = (False, True), iterations: int = 3000,
                target: float = 1e-6, seed: int = 0) -> ExperimentResult:
    """Bytes, link time and error of every compressor (see the module docstring).

    Parameters
    ----------
    d, n_over_d : problem size (``n = round(n_over_d * d)``), noise-free planted ReLU.
    workers, mode : the Ray workers K and the aggregation mode.
    codecs : labels of :data:`ZOO`.
    feedback : which of plain (False) and error feedback (True) to run.
    iterations, target : budget, and the ``rel_error`` each run stops at.
    seed : seed of the problem and of every draw.
    """
    problem = planted(d, n_over_d, seed=seed)
    K = check_int("workers", workers, minimum=1)
    mode = check_choice("mode", mode, MODES)
    target = check_float("target", target, strictly_positive=True)
    unknown = [c for c in codecs if c not in ZOO]
    if unknown or not codecs:
        raise ValueError(f"unknown compressor(s) {unknown or list(codecs)}; choose from "
                         f"{', '.join(ZOO)}")
    runs = []
    for label in codecs:
        for memory in dict.fromkeys(bool(f) for f in feedback):
            codec = ZOO[label](problem.d)
            try:
                history = ray_fit(problem, codec=ErrorFeedback(codec) if memory else codec,
                                  workers=K, mode=mode, iterations=iterations, tol=target,
                                  seed=seed).history
            except ValueError:
                # Diverged: a gradient overflowed what its codec can send. It happens
                # to error feedback around codecs that are not contractions
                # (rand-k's d/k scaling), whose memory grows each round.
                history = None
            runs.append((label, memory, history))
    rows, curves = _measure(runs, K, mode, target)
    table = pa.Table.from_pylist(rows)
    curves_table = stack(curves)
    return ExperimentResult(
        name=NAME, table=table, curves=curves_table,
        figure=plotting.figure_of(PANELS, table, curves_table,
                                  f"Compressors: d={problem.d}, n={problem.n}, K={K}, "
                                  f"{mode}, target {target:g}"),
        claim=claim(table, target), holds=_holds(table),
        params={"d": problem.d, "n": problem.n, "workers": K, "mode": mode,
                "codecs": list(codecs), "feedback": [bool(f) for f in feedback],
                "iterations": iterations, "target": target, "engine": "ray",
                "seed": seed})


def busiest_link_bytes(history: pa.Table, K: int, mode: str) -> np.ndarray:
    """Bytes a round puts on its busiest link (see the module docstring)."""
    if mode == "master":
        return column(history, "bytes_up") + column(history, "bytes_down")
    return column(history, "bytes_peer") / max(K, 1) + column(history, "bytes_up")


def _measure(runs: list, K: int, mode: str, target: float) -> tuple[list, list]:
    diverged = [{"codec": label, "error_feedback": memory, "diverged": True,
                 "reached_target": False} for label, memory, h in runs if h is None]
    runs = [run for run in runs if run[2] is not None]
    if not runs:
        return diverged, []
    totals = {}
    for label, memory, h in runs:
        totals[label, memory] = np.cumsum(sum(column(h, c) for c in BYTE_COLUMNS))
    shortest = min(len(column(h, "iteration")) for _, _, h in runs) - 1
    fewest = min(int(t[-1]) for t in totals.values())
    rows, curves = [], []
    for label, memory, h in runs:
        t, err = column(h, "iteration"), column(h, "rel_error")
        cum = totals[label, memory]
        link = np.cumsum(busiest_link_bytes(h, K, mode))
        hit = analysis.first_reach(t, err, target)
        reached = not math.isnan(hit)
        at = int(hit) if reached else len(t) - 1
        row: dict[str, Any] = {
            "codec": label, "error_feedback": memory, "diverged": False,
            "reached_target": reached,
            "iterations_to_target": hit,
            "bytes_to_target": int(cum[at]) if reached else None,
            "bytes_per_iter": float(cum[-1] / len(t)),
            "rel_error_at_equal_iterations": float(err[min(shortest, len(err) - 1)]),
            "rel_error_at_equal_bytes": float(err[max(0, np.searchsorted(cum, fewest,
                                                                         "right") - 1)]),
            "final_rel_error": float(err[-1])}
        for name, rate in LINK_RATES.items():
            seconds = 8 * link[at] / rate + (at + 1) * LINK_LATENCY_S
            row[f"link_s_to_target_{name.replace(' ', '')}"] = seconds if reached \
                else float("nan")
        rows.append(row)
        curves.append(tagged(h.append_column("cum_bytes", pa.array(cum))
                             .append_column("link_s_10mbit", pa.array(
                                 8 * link / LINK_RATES["10 mbit"]
                                 + (t + 1) * LINK_LATENCY_S)),
                             codec=f"{label}{' + EF' if memory else ''}"))
    return rows + diverged, curves


def _reached(table: pa.Table) -> list[dict]:
    return [r for r in table.to_pylist() if r["reached_target"]]


def _holds(table: pa.Table) -> bool:
    rows = {(r["codec"], r["error_feedback"]): r for r in table.to_pylist()}
    elias, dense = rows.get(("qsgd s=16 elias", False)), rows.get(("qsgd s=16 dense", False))
    if elias and dense and not (elias["reached_target"] and dense["reached_target"]
                                and elias["bytes_to_target"] < dense["bytes_to_target"]):
        return False
    return all(r["reached_target"] for (label, memory), r in rows.items()
               if memory and label in BIASED)


def claim(table: pa.Table, target: float) -> str:
    """The measured statement of the experiment, from its table."""
    done = _reached(table)
    if not done:
        return f"No compressor reached {target:g}."
    best = min(done, key=lambda r: r["bytes_to_target"])
    name = f"{best['codec']}{' with error feedback' if best['error_feedback'] else ''}"
    parts = [f"{name} reached {target:g} with the fewest bytes ({best['bytes_to_target']:,})"]
    base = next((r for r in done if r["codec"] == "fp32" and not r["error_feedback"]), None)
    if base:
        parts.append(f"{base['bytes_to_target'] / best['bytes_to_target']:.1f}x fewer "
                     f"than fp32")
    rows = {(r["codec"], r["error_feedback"]): r for r in done}
    elias, dense = rows.get(("qsgd s=16 elias", False)), rows.get(("qsgd s=16 dense", False))
    if elias and dense:
        parts.append(f"QSGD s=16 in Elias coding needed "
                     f"{dense['bytes_to_target'] / elias['bytes_to_target']:.1f}x fewer "
                     f"bytes than the same quantizer in fixed-width fields")
    stalled = [r["codec"] for r in table.to_pylist()
               if not r["error_feedback"] and not r["reached_target"]]
    if stalled:
        parts.append(f"without error feedback {', '.join(stalled)} did not reach "
                     f"{target:g} within the budget")
    diverged = [r["codec"] for r in table.to_pylist() if r["error_feedback"]
                and r["diverged"]]
    if diverged:
        parts.append(f"with error feedback {', '.join(diverged)} diverged")
    return "; ".join(parts) + "."


def _draw(ax, curves: pa.Table, x_name: str, xlabel: str, title: str,
          legend: bool = False) -> None:
    labels = column(curves, "codec")
    colors = plotting.colors_for(label.replace(" + EF", "") for label in labels)
    for label in dict.fromkeys(labels):
        mask = labels == label
        x = column(curves, x_name)[mask]
        ax.plot(x, column(curves, "rel_error")[mask],
                color=colors[label.replace(" + EF", "")],
                ls="--" if label.endswith("+ EF") else "-", lw=1.1, label=label)
    plotting.finish(ax, xlabel, "rel_error", title, logx=x_name != "iteration",
                    legend=legend)


def _draw_bytes(ax, table: pa.Table, curves: pa.Table) -> None:
    _draw(ax, curves, "cum_bytes", "bytes moved (cumulative)", "error vs bytes",
          legend=True)


def _draw_iterations(ax, table: pa.Table, curves: pa.Table) -> None:
    _draw(ax, curves, "iteration", "iteration", "error vs iterations")


def _draw_link(ax, table: pa.Table, curves: pa.Table) -> None:
    _draw(ax, curves, "link_s_10mbit", "modeled link time at 10 mbit (s)",
          "error vs link time")


PANELS = [_draw_bytes, _draw_iterations, _draw_link]
