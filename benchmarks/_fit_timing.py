"""Steady-state timing of ``ray_relu.fit``: per-iteration cost without the fit's setup.

``fit`` starts its actors, builds the shards and runs the start round before the
first iteration, and after the last it fetches the replicas and builds the history
table. None of that is per-iteration cost. :func:`time_fit` stamps the driver clock in
the ``on_round`` callback (called once after every round 1..T) and reports

    (stamp[T] - stamp[warmup]) / (T - warmup)

the mean driver-side time of one iteration once the actors are warm, everything
between two rounds included (submission, waiting, aggregation, the history row, the
loop's own bookkeeping). It also returns the medians of the history's per-round
split (compute/encode/comm/wall) over the same rounds.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import ray

SPLIT = ("compute_s", "encode_s", "comm_s", "wall_s")


def start_ray(num_cpus: int | None = None) -> None:
    """A private local Ray for one benchmark (never joins a running cluster)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 2,
             include_dashboard=False, configure_logging=False, log_to_driver=False)


def time_fit(problem: Any, *, iterations: int, warmup: int, **options: Any) -> dict:
    """Run ``fit(problem, iterations=..., tol=0, progress=False, **options)`` and time it.

    Returns ``{"per_iteration_s", "compute_s", "encode_s", "comm_s", "wall_s",
    "bytes_per_iteration"}``: the steady-state driver time per iteration (see the
    module docstring) and the medians of the history columns over the same rounds.
    """
    from ray_relu import fit

    if iterations <= warmup:
        raise ValueError(f"iterations={iterations} must exceed warmup={warmup}")
    stamps: list[float] = []
    result = fit(problem, iterations=iterations, tol=0.0, progress=False,
                 on_round=lambda record, actors: stamps.append(time.perf_counter()),
                 **options)
    # stamps[i] is the end of round i + 1; keep rounds warmup + 1 .. T.
    per_iteration = (stamps[-1] - stamps[warmup - 1]) / (len(stamps) - warmup)
    rounds = result.history.slice(warmup + 1)
    out = {"per_iteration_s": per_iteration}
    for column in SPLIT:
        out[column] = float(np.median(np.asarray(rounds.column(column))))
    moved = sum(np.asarray(rounds.column(c)) for c in ("bytes_up", "bytes_down", "bytes_peer"))
    out["bytes_per_iteration"] = float(np.mean(moved))
    return out
