"""Steady-state timing of ``ray_relu.fit``: per-iteration cost without the fit's setup.

``fit`` starts its actors, builds the shards and runs the start round before the
first iteration, and after the last it fetches the replicas and builds the history
table. None of that is per-iteration cost. :func:`time_fit` reads the driver clock in
the ``on_round`` callback, which ``fit`` calls once after every round 1..T: the time
from one callback's return to the next callback's entry is one iteration as the
driver sees it, everything included (submission, waiting, aggregation, the history
row, the loop's own bookkeeping). Rounds ``1..warmup`` are dropped and the mean of
the rest is reported. The driver thread's CPU time over the same span
(``time.thread_time``) is reported too: unlike wall time it hardly moves with the
machine's load, so it shows the driver-side cost of each candidate even when other
jobs crowd the cores.

``between`` runs other candidates *inside* the callback, one iteration each between
two rounds of the fit, timed separately and excluded from the fit's rounds: the
candidates alternate round by round, so a burst of machine noise hits them alike.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np

SPLIT = ("compute_s", "encode_s", "comm_s", "wall_s")


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (how crowded the cores were)."""
    return [round(x, 2) for x in os.getloadavg()]


def start_ray(num_cpus: int | None = None) -> None:
    """A private local Ray for one benchmark (never joins a running cluster)."""
    from ray_relu.runtime import ensure_ray
    ensure_ray("local", num_cpus=num_cpus or os.cpu_count() or 2, log_to_driver=False)


def time_fit(problem: Any, *, iterations: int, warmup: int,
             between: dict[str, Callable[[], Any]] | None = None, **options: Any) -> dict:
    """Run ``fit(problem, iterations=..., tol=0, progress=False, **options)`` and time it.

    Returns ``{"per_iteration_s", "per_iteration_cpu_s", "per_iteration_median_s",
    "compute_s", "encode_s", "comm_s", "wall_s", "bytes_per_iteration"}``: the
    steady-state mean driver time and driver-thread CPU time per iteration (module
    docstring), the median round, and the medians of the history columns over the
    same rounds; plus, for every name in ``between``, the mean seconds (``name``) and
    driver CPU seconds (``name + "_cpu"``) of one call.
    """
    from ray_relu import fit

    if not 1 <= warmup < iterations - 1:
        raise ValueError(f"need 1 <= warmup < iterations - 1, got warmup={warmup}, "
                         f"iterations={iterations}")
    between = between or {}
    # fit_rounds[i]: (wall, cpu) of round i + 2 (round 1 has no start)
    fit_rounds: list[tuple[float, float]] = []
    others: dict[str, list[tuple[float, float]]] = {name: [] for name in between}
    resumed: list[tuple[float, float]] = []      # clocks when the last callback returned

    def clocks() -> tuple[float, float]:
        return time.perf_counter(), time.thread_time()

    def since(start: tuple[float, float]) -> tuple[float, float]:
        wall, cpu = clocks()
        return wall - start[0], cpu - start[1]

    def on_round(record: Any, actors: list) -> None:
        if resumed:
            fit_rounds.append(since(resumed[0]))
        for name, step in between.items():
            start = clocks()
            step()
            others[name].append(since(start))
        resumed[:] = [clocks()]

    result = fit(problem, iterations=iterations, tol=0.0, progress=False,
                 on_round=on_round, **options)
    steady = np.asarray(fit_rounds[warmup - 1:])
    wall, cpu = steady.mean(axis=0)
    out = {"per_iteration_s": float(wall), "per_iteration_cpu_s": float(cpu),
           "per_iteration_median_s": float(np.median(steady[:, 0]))}
    for name, times in others.items():
        wall, cpu = np.mean(times[warmup:], axis=0)
        out[name], out[name + "_cpu"] = float(wall), float(cpu)
    rounds = result.history.slice(warmup + 1)
    for column in SPLIT:
        out[column] = float(np.median(np.asarray(rounds.column(column))))
    moved = sum(np.asarray(rounds.column(c)) for c in ("bytes_up", "bytes_down", "bytes_peer"))
    out["bytes_per_iteration"] = float(np.mean(moved))
    return out
