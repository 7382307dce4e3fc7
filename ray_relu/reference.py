"""A plain single-process implementation of the distributed algorithm.

:func:`sgd` runs the exact computation of :func:`ray_relu.fit` (the same shards, batch
draws, codec randomness, summation order and step) in one process with no Ray. It is
the yardstick of the engine's correctness: with ``codec="fp64"`` the distributed fit
matches it to round-off at every iteration, for any K and both modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from . import algorithm
from .settings import RunConfig, accepts_run_options, resolve, run_config

# The reference's own defaults where they differ from fit's: exact messages, one
# worker, a short run to the iteration limit.
REFERENCE_DEFAULTS = RunConfig(codec="fp64", workers=1, iterations=100, tol=0.0)


@dataclass
class ReferenceRun:
    """Iterates ``w_0..w_T`` and the deterministic history columns of a reference run."""

    iterates: np.ndarray      # shape (T + 1, num_params)
    history: pa.Table         # iteration, loss, rel_error, rel_change


@accepts_run_options
def sgd(problem: Any, config: RunConfig | None = None, /, **options: Any) -> ReferenceRun:
    """Run the algorithm of :func:`ray_relu.fit` in this process (same parameters, a
    :class:`~ray_relu.settings.RunConfig` and/or its fields as keywords).

    Defaults differ from fit's: ``codec="fp64"``, ``workers=1``, ``iterations=100``,
    ``tol=0``. ``mode`` matters only through ``downlink_codec`` (master); both modes
    compute the same iterates. Stops after ``iterations`` updates or when the stopping
    rule of ``fit`` fires with ``tol``.
    """
    s = resolve(problem, run_config(config or REFERENCE_DEFAULTS, **options))
    K, plan = s.workers, s.plan
    shards = [algorithm.shard_rows(s.model, s.source, k, K) for k in range(K)]
    rel_error = s.model.error_meter(s.w_star)
    w = s.start_point()
    if w is None:
        w = algorithm.data_start(plan, [s.model.shard_statistic(s.init, X, y)
                                        for X, y in shards])
    iterates, rows, previous = [], [], None
    residuals, downlink_residual = [None] * K, None      # error feedback's memory
    for t in range(s.iterations + 1):
        losses, grads = [], []
        for k, (X, y) in enumerate(shards):
            idx = algorithm.batch_indices(plan.seed, t, k, len(y), plan.batch_rows[k])
            loss, g = algorithm.evaluate(s.model, w, X, y, idx)
            losses.append(loss)
            _, value, residuals[k] = algorithm.compress_gradient(s.codec, g, residuals[k],
                                                                 plan.seed, t, k)
            grads.append(value)
        change = algorithm.relative_change(w, previous) if previous is not None else float("nan")
        rows.append({"iteration": t, "loss": float(sum(c * v for c, v in zip(plan.weights, losses))),
                     "rel_error": rel_error(w), "rel_change": change})
        iterates.append(w)
        if s.should_stop(rows[-1], t):
            break
        g = algorithm.average(grads, plan.weights)
        previous = w
        if s.downlink is None:
            w = algorithm.sgd_step(w, g, s.step_size)
        else:
            _, delta, downlink_residual = algorithm.compress_downlink(
                s.downlink, -s.step_size * g, downlink_residual, plan.seed, t)
            w = w + delta
    return ReferenceRun(np.array(iterates), pa.Table.from_pylist(rows))
