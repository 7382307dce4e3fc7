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
from .model import moment_sum, relative_error
from .settings import resolve, start_point


@dataclass
class ReferenceRun:
    """Iterates ``w_0..w_T`` and the deterministic history columns of a reference run."""

    iterates: np.ndarray      # shape (T + 1, d)
    history: pa.Table         # iteration, loss, rel_error, rel_change


def sgd(problem: Any, *, codec: Any = "fp64", codec_options: dict | None = None,
        workers: int = 1, mode: str = "master", batch_size: int | None = None,
        step_size: float | None = None, iterations: int = 100, tol: float = 0.0,
        init: Any = "moment", seed: int = 0, downlink_codec: Any = None) -> ReferenceRun:
    """Run the algorithm of :func:`ray_relu.fit` in this process (same arguments).

    ``mode`` matters only through ``downlink_codec`` (master); both modes compute the
    same iterates. Stops after ``iterations`` updates or when the stopping rule of
    ``fit`` fires with ``tol``.
    """
    s = resolve(problem, codec=codec, codec_options=codec_options, workers=workers,
                mode=mode, batch_size=batch_size, step_size=step_size,
                iterations=iterations, tol=tol, init=init, seed=seed,
                downlink_codec=downlink_codec)
    K, plan, w_star = s.workers, s.plan, s.source.w_star
    shards = [s.source.shard(k, K) for k in range(K)]
    w = start_point(s)
    if w is None:
        w = algorithm.moment_start([moment_sum(X, y) for X, y in shards], plan.n)
    iterates, rows, previous = [], [], None
    for t in range(s.iterations + 1):
        losses, grads = [], []
        for k, (X, y) in enumerate(shards):
            idx = algorithm.batch_indices(plan.seed, t, k, len(y), plan.batch_rows[k])
            loss, g = algorithm.evaluate(w, X, y, idx)
            losses.append(loss)
            grads.append(s.codec.decode(algorithm.encode_gradient(s.codec, g, plan.seed, t, k)))
        rel_err = relative_error(w, w_star) if w_star is not None else float("nan")
        change = algorithm.relative_change(w, previous) if previous is not None else float("nan")
        rows.append({"iteration": t, "loss": float(sum(c * v for c, v in zip(plan.weights, losses))),
                     "rel_error": rel_err, "rel_change": change})
        iterates.append(w)
        if (rel_err if w_star is not None else change) <= s.tol or t == s.iterations:
            break
        g = algorithm.average(grads, plan.weights)
        previous = w
        if s.downlink is None:
            w = algorithm.sgd_step(w, g, s.step_size)
        else:
            delta = algorithm.encode_downlink(s.downlink, -s.step_size * g, plan.seed, t)
            w = w + s.downlink.decode(delta)
    return ReferenceRun(np.array(iterates), pa.Table.from_pylist(rows))
