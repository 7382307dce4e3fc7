"""One SGD iteration, split into the pieces that run on workers and coordinators.

Pure numpy. The Ray workers, the master coordinator, the all-to-all replicas and the
single-process reference (:mod:`ray_relu.reference`) all call these same functions in
the same order, which is what makes their results equal to the last bit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from .codecs import Codec, ErrorFeedback
from .seeding import BATCH, DOWNLINK, QUANTIZE, rng_for

if TYPE_CHECKING:
    from .models import Model
    from .settings import WorkerPlan


def shard_rows(model: "Model", source, k: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Shard ``k`` of ``K`` of ``source`` as ``model`` reads it
    (:meth:`~ray_relu.models.Model.readable_rows`)."""
    X, y = source.shard(k, K)
    return model.readable_rows(X), y


def batch_indices(seed: int, t: int, k: int, shard_rows: int,
                  batch_rows: int | None) -> np.ndarray | None:
    """Rows of shard ``k`` used at iteration ``t`` (sorted), or None for the whole shard.

    Drawn without replacement from stream (seed, BATCH, t, k): a worker restarted at
    iteration ``t`` draws the same rows, whichever process it lives in.
    """
    if batch_rows is None:
        return None
    idx = rng_for(seed, BATCH, t, k).choice(shard_rows, batch_rows, replace=False)
    return np.sort(idx)


def evaluate(model: "Model", w: np.ndarray, X: np.ndarray, y: np.ndarray,
             idx: np.ndarray | None) -> tuple[float, np.ndarray]:
    """The model's mean loss and gradient on the rows ``idx`` (all when None) at ``w``."""
    return model.loss_and_gradient_rows(w, X, y, idx)


def compress_gradient(codec: Codec, g: np.ndarray, residual: np.ndarray | None,
                      seed: int, t: int, k: int
                      ) -> tuple[bytes, np.ndarray, np.ndarray | None]:
    """Encode worker ``k``'s gradient of iteration ``t`` with its own random stream:
    the message, what it decodes to (bit for bit; the sender needs not decode it) and
    the memory.

    With error feedback, ``residual`` is the worker's memory at iteration ``t`` (None:
    zero) and the third value its memory for ``t + 1``; without, both are None.
    """
    return _compress(codec, g, residual, rng_for(seed, QUANTIZE, t, k))


def compress_downlink(codec: Codec, delta: np.ndarray, residual: np.ndarray | None,
                      seed: int, t: int) -> tuple[bytes, np.ndarray, np.ndarray | None]:
    """Encode the master's update of iteration ``t`` (a stream distinct from the
    workers'), with the master's memory under error feedback as in
    :func:`compress_gradient`."""
    return _compress(codec, delta, residual, rng_for(seed, DOWNLINK, t))


def encode_gradient(codec: Codec, g: np.ndarray, seed: int, t: int, k: int) -> bytes:
    """The message of :func:`compress_gradient` with no memory."""
    return compress_gradient(codec, g, None, seed, t, k)[0]


def encode_downlink(codec: Codec, delta: np.ndarray, seed: int, t: int) -> bytes:
    """The message of :func:`compress_downlink` with no memory."""
    return compress_downlink(codec, delta, None, seed, t)[0]


def _compress(codec: Codec, vec: np.ndarray, residual: np.ndarray | None,
              rng: np.random.Generator) -> tuple[bytes, np.ndarray, np.ndarray | None]:
    if isinstance(codec, ErrorFeedback):
        return codec.compress_with_value(vec, residual, rng=rng)
    return (*codec.encode_with_value(vec, rng=rng), None)


def average(grads: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``sum_k weights[k] * grads[k]``, summed in worker order (never reordered)."""
    total = weights[0] * grads[0]
    for wk, gk in zip(weights[1:], grads[1:]):
        total += wk * gk
    return total


def sgd_step(w: np.ndarray, g: np.ndarray, step_size: float) -> np.ndarray:
    """``w - step_size * g`` (a new array)."""
    return w - step_size * g


def data_start(plan: "WorkerPlan", statistics: Sequence[np.ndarray]) -> np.ndarray:
    """``w_0`` of a data initialization from the K shards' statistics, summed in worker
    order (the same bits on the driver, on every worker and in the reference)."""
    total = statistics[0].copy()
    for part in statistics[1:]:
        total += part
    return plan.model.initial_point(plan.init, plan.d, seed=plan.seed, statistic=total,
                                    n=plan.n)


def relative_change(w_new: np.ndarray, w_old: np.ndarray) -> float:
    """``||w_new - w_old|| / ||w_old||`` (the absolute change when ``w_old = 0``)."""
    denom = float(np.linalg.norm(w_old))
    diff = float(np.linalg.norm(w_new - w_old))
    return diff / denom if denom > 0 else diff
