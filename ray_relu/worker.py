"""``ShardWorker``: the Ray actor that owns one shard of the data.

A worker builds its shard where it runs (from the problem's parameters, by reading its
rows of a Parquet file, or by fetching its rows of in-memory data or of a Ray Dataset
from the object store; :mod:`ray_relu.data`), keeps a replica of ``w``, and in each
round ``t``:

1. brings its replica to ``w_t`` from what the coordinator sends (``kind``):
   ``"set"`` (an encoded ``w_t``), ``"statistic"`` (the K encoded shard statistics
   of a data initialization, which the model turns into ``w_0``),
   ``"delta"`` (an encoded update from the master) or ``"peers"`` (the encoded
   gradients of round ``t - 1`` of the K - 1 other workers; the worker adds its own,
   which it kept, so its own message never travels back to it);
2. evaluates the model's loss and gradient on its mini-batch of iteration ``t`` at
   ``w_t``;
3. encodes the gradient and returns the bytes, which Ray keeps in the object store.

Steps 1 to 3 are one actor call, so an iteration costs one call per worker.

Everything random is keyed by (seed, t, k), so a worker restarted after a crash rebuilds
its shard and, given ``w_c`` of some earlier round (``"set"``) and the rounds after it,
produces the very same bytes again. With error feedback the worker's memory (the
residual of :class:`~ray_relu.codecs.ErrorFeedback`) is state too: a ``"set"`` may
carry the residual of round ``c`` as a second message, and the coordinator keeps it in
its snapshots and checkpoints (:meth:`ShardWorker.residual_message`).
The last few replicas are kept
(:meth:`ShardWorker.replica_at`), because the coordinator submits rounds ahead and
asks for ``w_t`` after the worker may have moved on.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import NamedTuple

import numpy as np
import ray

from . import algorithm
from .codecs import ErrorFeedback, FullPrecision
from .data import DataSource
from .settings import WorkerPlan

# Replicas a worker keeps: more than the rounds a coordinator submits ahead.
KEPT_REPLICAS = 8
# Ray records every task's events for its dashboard and state API. The calls made every
# round (thousands a fit, all alike) go without: a bare K = 3 relay loop on loopback
# took 1.62 against 1.70 ms a round (medians of 5, side by side).
ROUND_CALL = {"enable_task_events": False}


class ReplicaLost(RuntimeError):
    """A worker does not hold the replica a call needs (it was restarted, or the
    replica is too old); the coordinator replays from a snapshot."""


class RoundStats(NamedTuple):
    """What a worker reports with each gradient message.

    It travels packed into 48 bytes (:meth:`pack`): Ray hands ``bytes`` over as they
    are, whereas a dict would be pickled by every worker and unpickled by the driver,
    every round.
    """

    loss: float            # mean loss of the rows used, at w_t
    compute_s: float       # loss + gradient
    encode_s: float        # encode, plus the decoding that brought the replica to w_t
    rel_error: float       # ||w_t - w*|| / ||w*|| of this replica (NaN: w* unknown)
    rel_change: float      # ||w_t - w_{t-1}|| / ||w_{t-1}|| (NaN: no previous w)
    received_bytes: int    # bytes that reached this worker from elsewhere this round

    def pack(self) -> bytes:
        """The 48-byte wire form."""
        return _STATS.pack(*self)

    @classmethod
    def unpack(cls, buf: bytes) -> "RoundStats":
        """Inverse of :meth:`pack`."""
        return cls(*_STATS.unpack(buf))


_STATS = struct.Struct("<5dq")


class ShardWorker:
    """One shard of the data and one replica of ``w`` (started by
    :func:`ray_relu.runtime.spawn_workers`)."""

    def __init__(self, source: DataSource, k: int, K: int, plan: WorkerPlan) -> None:
        self.k, self.K, self.plan = k, K, plan
        self.model = plan.model
        self.X, self.y = algorithm.shard_rows(self.model, source, k, K)
        self.rel_error = self.model.error_meter(source.w_star if plan.measure_error
                                                else None)
        self.codec = plan.codec                 # Codec objects, pickled here by Ray
        self.downlink = plan.downlink
        self.exact = FullPrecision("float64")
        self.w: np.ndarray | None = None
        self.t = -1
        self.own: np.ndarray | None = None      # what its message of round t decodes to
        self.kept: dict[int, np.ndarray] = {}   # round -> replica, the last few
        # Error feedback: round -> the memory that round's gradient is encoded with.
        self.feedback = isinstance(self.codec, ErrorFeedback)
        self.residuals: dict[int, np.ndarray | None] = {0: None}

    def info(self) -> dict:
        """Where this worker runs and what it holds (for placement checks and logs)."""
        return {"k": self.k, "rows": len(self.y), "pid": os.getpid(),
                "node_ip": ray.util.get_node_ip_address(), "host": socket.gethostname(),
                "node_id": ray.get_runtime_context().get_node_id()}

    def statistic_message(self) -> bytes:
        """This shard's part of the data initialization's statistic, encoded exactly."""
        return self.exact.encode(self.model.shard_statistic(self.plan.init, self.X, self.y))

    def replica_at(self, t: int | None = None) -> np.ndarray:
        """The replica ``w_t`` (the newest one when ``t`` is None)."""
        t = self.t if t is None else t
        if t not in self.kept:
            raise ReplicaLost(f"worker {self.k} holds no replica of iteration {t} "
                              f"(it is at iteration {self.t})")
        return self.kept[t]

    def max_abs_difference(self, t: int, other: np.ndarray) -> float:
        """``max_i |w_t[i] - other[i]|``: how far this replica is from another one."""
        return float(np.max(np.abs(self.replica_at(t) - other)))

    def replica_message(self, t: int) -> bytes:
        """``w_t`` encoded exactly: a snapshot the coordinator can replay from."""
        return self.exact.encode(self.replica_at(t))

    def residual_message(self, t: int) -> bytes:
        """Error feedback's memory for round ``t``, encoded exactly (zeros before the
        first round): with ``w_t``, what a replay of round ``t`` needs."""
        if t not in self.residuals:
            raise ReplicaLost(f"worker {self.k} holds no error-feedback memory of "
                              f"iteration {t} (it is at iteration {self.t})")
        residual = self.residuals[t]
        return self.exact.encode(np.zeros(self.model.num_params(self.plan.d))
                                 if residual is None else residual)

    @ray.method(num_returns=2, **ROUND_CALL)
    def advance(self, round_: tuple, *payload: bytes) -> tuple[bytes, bytes]:
        """Bring the replica to ``w_t`` (see module doc), then evaluate and encode.

        ``round_`` is ``(t, kind, step_size)``, one argument rather than three because
        Ray serializes each call argument separately (about 20 us apiece on the
        driver, every worker, every round). ``payload`` holds the message(s) of
        ``kind``; refs among them are resolved by Ray before the call. Returns the
        encoded gradient and the packed :class:`RoundStats`. Raises
        :class:`ReplicaLost` when ``kind`` updates a replica this worker does not hold.
        """
        t, kind, step_size = round_
        start = time.perf_counter()
        if kind == "set":
            w = self.exact.decode(payload[0])
            if len(payload) > 1:                 # error feedback's memory of round t
                self.residuals[t] = self.exact.decode(payload[1])
            elif t == 0:                         # a start: no memory yet
                self.residuals[t] = None
            elif self.feedback and t not in self.residuals:
                raise ReplicaLost(f"worker {self.k} was sent w_{t} without the "
                                  f"error-feedback memory of that round")
        elif kind == "statistic":
            w = algorithm.data_start(self.plan, [self.exact.decode(p) for p in payload])
            self.residuals[t] = None
        else:
            if self.t != t - 1 or self.w is None:
                raise ReplicaLost(f"worker {self.k} holds iteration {self.t}, "
                                  f"round {t} needs {t - 1}")
            if kind == "delta":
                w = self.w + self.downlink.decode(payload[0])
            else:
                grads = [self.codec.decode(m) for m in payload]
                grads.insert(self.k, self.own)
                w = algorithm.sgd_step(self.w, algorithm.average(grads, self.plan.weights),
                                       step_size)
        self._keep(t, w)
        decode_s = time.perf_counter() - start
        # Bytes that reached this worker from elsewhere: everything it was sent, except
        # the statistic it computed itself.
        received = sum(len(p) for j, p in enumerate(payload)
                       if not (kind == "statistic" and j == self.k)
                       and not (kind == "set" and j == 1))
        message, stats = self._evaluate(t, decode_s, received)
        return message, stats.pack()

    def _keep(self, t: int, w: np.ndarray) -> None:
        self.w, self.t = w, t
        self.kept[t] = w
        for by_round in (self.kept, self.residuals):
            for old in [r for r in by_round if r <= t - KEPT_REPLICAS or r > t]:
                del by_round[old]  # too old, or from a timeline a replay has replaced

    def _evaluate(self, t: int, decode_s: float, received: int) -> tuple[bytes, RoundStats]:
        t0 = time.perf_counter()
        idx = algorithm.batch_indices(self.plan.seed, t, self.k, len(self.y),
                                      self.plan.batch_rows[self.k])
        loss, g = algorithm.evaluate(self.model, self.w, self.X, self.y, idx)
        t1 = time.perf_counter()
        message, self.own, self.residuals[t + 1] = algorithm.compress_gradient(
            self.codec, g, self.residuals.get(t), self.plan.seed, t, self.k)
        t2 = time.perf_counter()
        previous = self.kept.get(t - 1)
        stats = RoundStats(
            loss=loss, compute_s=t1 - t0, encode_s=t2 - t1 + decode_s,
            rel_error=self.rel_error(self.w),
            rel_change=(algorithm.relative_change(self.w, previous)
                        if previous is not None else float("nan")),
            received_bytes=received)
        return message, stats
