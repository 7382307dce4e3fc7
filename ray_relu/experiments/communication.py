"""Experiment 4: communication, error against bytes moved and against wall time.

What it measures: one realizable planted problem fitted to ``target`` by mini-batch
SGD for each codec, each mode and each number of workers K. Every byte is counted from
the real encoded messages (the history's ``bytes_up``, ``bytes_down``, ``bytes_peer``:
master mode moves K gradient messages up and K copies of the full-precision ``w``
down per iteration; all-to-all moves K(K-1) gradient messages between workers and
nothing through the driver). Reported per run: iterations, total bytes, gradient
bytes (round 0 included: it carries the moment sums) and wall-clock seconds (round 0
excluded and reported as ``setup_s``: it includes starting the actors and building
the shards) until ``rel_error <= target``, and the per-iteration split of time into
compute, encode and communication as the engine measured it.

Criterion (``holds``): for every K >= 2, in each mode, the codec that sends the
fewest gradient bytes per iteration also reaches ``target`` with the fewest gradient
bytes in total, i.e. compression is not eaten up by extra iterations.

On one machine the "network" is shared memory, so wall time mostly measures Ray's
per-round overhead and the codec's CPU cost; the byte counts are what a real network
would carry (``--address`` runs the same sweep on a cluster).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pyarrow as pa

from .._validation import check_choice, check_float, check_int
from ..settings import MODES
from . import analysis, plotting
from .codec_specs import parse_codecs
from .result import ExperimentResult
from .runs import (BYTE_COLUMNS, DEFAULT_BATCH, GRADIENT_BYTES, batch_rows, per_iteration,
                   planted, ray_fit)
from .tables import column, stack, tagged

NAME = "communication"
DEFAULT_CODECS = ("fp32", "fp16", "qsgd:4")


def communication(*, d: int = 400, n_over_d: float = 8.0,
                  workers: Sequence[int] = (1, 2, 4, 8), codecs: Sequence[str] = DEFAULT_CODECS,
                  modes: Sequence[str] = MODES, batch_size: int | None = DEFAULT_BATCH,
                  iterations: int = 1500, target: float = 1e-6,
                  seed: int = 0) -> ExperimentResult:
    """Bytes and time to reach ``target`` per codec, mode and K (see the module docstring).

    Parameters
    ----------
    d, n_over_d : problem size (``n = round(n_over_d * d)``).
    workers : the numbers of Ray workers K.
    codecs : codec specs (:mod:`~ray_relu.experiments.codec_specs`).
    modes : a subset of ``("master", "all-to-all")``.
    batch_size : rows per iteration over all workers; ``-1`` (default) means ``n // 2``,
        None full batch.
    iterations, target : budget, and the ``rel_error`` each run stops at.
    seed : seed of the problem, the batches and the quantization.
    """
    problem = planted(d, n_over_d, seed=seed)
    batch = batch_rows(batch_size, problem.n, 2)
    choices = parse_codecs(codecs, problem.d)
    modes = [check_choice("mode", m, MODES) for m in modes]
    ks = [check_int("workers", k, minimum=1) for k in workers]
    if not modes or not ks:
        raise ValueError("modes and workers must not be empty")
    target = check_float("target", target, strictly_positive=True)
    rows, curves = [], []
    for K in ks:
        for mode in modes:
            for choice in choices:
                result = ray_fit(problem, codec=choice.codec, codec_options=choice.options,
                                 workers=K, mode=mode, batch_size=batch,
                                 iterations=iterations, tol=target, seed=seed)
                h = result.history
                total = sum(column(h, c) for c in BYTE_COLUMNS)
                wall = column(h, "wall_s")
                cum_bytes, cum_wall = np.cumsum(total), np.cumsum(wall) - wall[0]
                cum_grad = np.cumsum(column(h, GRADIENT_BYTES[mode]))
                t, err = column(h, "iteration"), column(h, "rel_error")
                hit = analysis.first_reach(t, err, target)
                reached = not math.isnan(hit)
                at = int(hit) if reached else len(t) - 1
                rows.append({
                    "codec": choice.label, "mode": mode, "workers": K,
                    "reached_target": reached, "iterations_to_target": hit,
                    "bytes_to_target": int(cum_bytes[at]) if reached else None,
                    "gradient_bytes_to_target": int(cum_grad[at]) if reached else None,
                    "wall_s_to_target": float(cum_wall[at]) if reached else float("nan"),
                    "final_rel_error": result.rel_error, "setup_s": float(wall[0]),
                    **{f"{c}_per_iter": per_iteration(h, c) for c in BYTE_COLUMNS},
                    "gradient_bytes_per_iter": per_iteration(h, GRADIENT_BYTES[mode]),
                    **{f"{c}_per_iter": float(np.median(column(h, c)[1:]))
                       if h.num_rows > 1 else float("nan")
                       for c in ("compute_s", "encode_s", "comm_s", "wall_s")}})
                curves.append(tagged(h.append_column("cum_bytes", pa.array(cum_bytes))
                                      .append_column("cum_wall_s", pa.array(cum_wall)),
                                     codec=choice.label, mode=mode, workers=K))
    table = pa.Table.from_pylist(rows)
    curves_table = stack(curves)
    title = (f"Communication: d={problem.d}, n={problem.n}, batch "
             f"{problem.n if batch is None else batch}, target {target:g}")
    return ExperimentResult(
        name=NAME, table=table, curves=curves_table,
        figure=plotting.figure_of(PANELS, table, curves_table, title),
        claim=claim(table, target), holds=_holds(table),
        params={"d": problem.d, "n": problem.n, "workers": ks, "codecs": list(codecs),
                "modes": modes, "batch_size": batch, "iterations": iterations,
                "target": target, "engine": "ray", "seed": seed})


def _groups(table: pa.Table):
    """Rows grouped by (mode, K) for K >= 2, in table order."""
    groups: dict = {}
    for r in table.to_pylist():
        if r["workers"] >= 2:
            groups.setdefault((r["mode"], r["workers"]), []).append(r)
    return groups


def _holds(table: pa.Table) -> bool:
    for rows in _groups(table).values():
        if not all(r["reached_target"] for r in rows):
            return False
        smallest = min(rows, key=lambda r: r["gradient_bytes_per_iter"])
        if smallest["gradient_bytes_to_target"] != min(r["gradient_bytes_to_target"]
                                                      for r in rows):
            return False
    return True


def claim(table: pa.Table, target: float) -> str:
    """The measured statement of experiment 4, from its table."""
    groups = _groups(table)
    if not groups:
        return "No run had K >= 2 workers, so no bytes crossed between processes."
    parts = []
    for mode in dict.fromkeys(m for m, _ in groups):
        K = max(k for m, k in groups if m == mode)
        rows = [r for r in groups[mode, K] if r["reached_target"]]
        if len(rows) < 2:
            parts.append(f"{mode} with K={K}: fewer than two codecs reached {target:g}")
            continue
        base, best = rows[0], min(rows, key=lambda r: r["gradient_bytes_to_target"])
        grad = base["gradient_bytes_to_target"] / best["gradient_bytes_to_target"]
        total = best["bytes_to_target"] / base["bytes_to_target"]
        parts.append(f"{mode} with K={K}: {best['codec']} reached {target:g} with {grad:.1f}x "
                     f"fewer gradient bytes than {base['codec']} (all bytes, any direction: "
                     f"{total:.2f}x {base['codec']}'s) in {best['wall_s_to_target']:.2f} s "
                     f"against {base['wall_s_to_target']:.2f} s")
    return "; ".join(parts) + "."


def _focus(values) -> int:
    ks = sorted(set(int(k) for k in values))
    return 4 if 4 in ks else ks[-1]


def _draw_against(ax, curves: pa.Table, x_name: str, scale: float) -> int:
    K = _focus(column(curves, "workers"))
    codec, mode, workers = (column(curves, c) for c in ("codec", "mode", "workers"))
    colors = plotting.colors_for(codec)
    for c in colors:
        for m in dict.fromkeys(mode):
            mask = (codec == c) & (mode == m) & (workers == K)
            x = column(curves, x_name)[mask] * scale
            keep = x > 0
            ax.plot(x[keep], column(curves, "rel_error")[mask][keep], color=colors[c],
                    ls=plotting.MODE_STYLE[m][0], lw=1.1, label=f"{c}, {m}")
    return K


def _draw_bytes(ax, table: pa.Table, curves: pa.Table) -> None:
    K = _draw_against(ax, curves, "cum_bytes", 1e-6)
    plotting.finish(ax, "MB moved (cumulative, all directions)", "rel_error",
                    f"error vs bytes, K={K}", logx=True)


def _draw_wall(ax, table: pa.Table, curves: pa.Table) -> None:
    K = _draw_against(ax, curves, "cum_wall_s", 1.0)
    plotting.finish(ax, "wall time after setup (s, cumulative)", "rel_error",
                    f"error vs time, K={K}", legend=False)


def _draw_per_k(ax, table: pa.Table, value: str, ylabel: str, title: str) -> None:
    rows = table.to_pylist()
    colors = plotting.colors_for(r["codec"] for r in rows)
    for c in colors:
        for m in dict.fromkeys(r["mode"] for r in rows):
            pts = [(r["workers"], r[value]) for r in rows
                   if r["codec"] == c and r["mode"] == m and r[value]]
            if pts:
                ls, marker = plotting.MODE_STYLE[m]
                ax.plot(*zip(*pts), ls=ls, marker=marker, ms=3, color=colors[c],
                        label=f"{c}, {m}")
    plotting.finish(ax, "workers K", ylabel, title, logx=True, legend=False)
    ax.set_xticks(sorted({r["workers"] for r in rows}), minor=False)
    ax.set_xticklabels([str(k) for k in sorted({r["workers"] for r in rows})])


def _draw_bytes_per_k(ax, table: pa.Table, curves: pa.Table) -> None:
    _draw_per_k(ax, table, "bytes_to_target", "bytes to reach target",
                "total bytes to target vs K")


def _draw_wall_per_k(ax, table: pa.Table, curves: pa.Table) -> None:
    _draw_per_k(ax, table, "wall_s_to_target", "seconds to reach target",
                "wall time to target vs K")


PANELS = (_draw_bytes, _draw_wall, _draw_bytes_per_k, _draw_wall_per_k)
