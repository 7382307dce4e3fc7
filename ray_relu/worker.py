"""``ShardWorker``: the Ray actor that owns one shard of the data.

A worker builds its shard where it runs (from the problem's parameters, or by reading
its rows of a Parquet file), keeps a replica of ``w``, and in each round:

1. brings its replica to ``w_t`` from what the coordinator sends (``kind``):
   ``"set"`` (an encoded ``w``), ``"moment"`` (the K encoded moment sums),
   ``"delta"`` (an encoded update from the master) or ``"peers"`` (the K encoded
   gradients of the previous round, all-to-all);
2. evaluates loss and gradient on its mini-batch of iteration ``t`` at ``w_t``;
3. encodes the gradient and returns the bytes, which Ray keeps in the object store.

Steps 1 and 2 are one actor call, so an iteration costs one round trip.

Everything random is keyed by (seed, t, k), so a worker restarted after a crash rebuilds
its shard and, given its replica back (``recovery``), produces the very same bytes.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Any, NamedTuple

import numpy as np
import ray

from . import algorithm
from .codecs import FullPrecision, get_codec
from .data import DataSource
from .model import moment_sum
from .settings import WorkerPlan

UPDATE_KINDS = ("set", "moment", "delta", "peers")


class ReplicaLost(RuntimeError):
    """A worker was restarted and has no replica of ``w`` to update; send recovery."""


class RoundStats(NamedTuple):
    """What a worker reports with each gradient message.

    It travels packed into 49 bytes (:meth:`pack`): Ray hands ``bytes`` over as they
    are, whereas a dict would be pickled by every worker and unpickled by the driver,
    every round.
    """

    loss: float            # mean loss of the rows used, at w_t
    compute_s: float       # loss + gradient
    encode_s: float        # encode, plus the decoding that brought the replica to w_t
    rel_error: float       # ||w_t - w*|| / ||w*|| of this replica (NaN: w* unknown)
    rel_change: float      # ||w_t - w_{t-1}|| / ||w_{t-1}|| (NaN: no previous w)
    received_bytes: int    # bytes that reached this worker from elsewhere this round
    recovered: bool        # the replica was rebuilt from recovery data this round

    def pack(self) -> bytes:
        """The 49-byte wire form."""
        return _STATS.pack(*self)

    @classmethod
    def unpack(cls, buf: bytes) -> "RoundStats":
        """Inverse of :meth:`pack`."""
        return cls(*_STATS.unpack(buf))


_STATS = struct.Struct("<5dq?")


class ShardWorker:
    """One shard of the data and one replica of ``w`` (use through :func:`spawn_workers`)."""

    def __init__(self, source: DataSource, k: int, K: int, plan: WorkerPlan) -> None:
        self.k, self.K, self.plan = k, K, plan
        self.X, self.y = source.shard(k, K)
        self.rel_error = algorithm.error_meter(source.w_star)
        self.codec = get_codec(plan.codec)
        self.downlink = get_codec(plan.downlink) if plan.downlink else None
        self.exact = FullPrecision("float64")
        self.w: np.ndarray | None = None
        self.t = -1

    def info(self) -> dict:
        """Where this worker runs and what it holds (for placement checks and logs)."""
        return {"k": self.k, "rows": len(self.y), "pid": os.getpid(),
                "node_ip": ray.util.get_node_ip_address(), "host": socket.gethostname(),
                "node_id": ray.get_runtime_context().get_node_id()}

    def moment_message(self) -> bytes:
        """This shard's ``sum_i y_i x_i``, encoded exactly (float64)."""
        return self.exact.encode(moment_sum(self.X, self.y))

    def replica(self) -> np.ndarray:
        """The current replica of ``w`` (a copy travels through the object store)."""
        if self.w is None:
            raise ReplicaLost(f"worker {self.k} has no replica yet")
        return self.w

    def replica_message(self) -> bytes:
        """The current replica, encoded exactly: a snapshot peers can recover from."""
        return self.exact.encode(self.replica())

    @ray.method(num_returns=2)
    def advance(self, round_: tuple, *payload: bytes) -> tuple[bytes, bytes]:
        """Bring the replica to ``w_t`` (see module doc), then evaluate and encode.

        ``round_`` is ``(t, kind, step_size, recovery)``, one argument rather than four
        because Ray serializes each call argument separately (about 20 us apiece on
        the driver, every worker, every round). ``payload`` holds the message(s) of
        ``kind``; refs among them are resolved by Ray before the call. Returns the
        encoded gradient and the packed :class:`RoundStats`.

        ``recovery`` is None, or ``[(snapshot_kind, snapshot_refs, rounds)]`` that
        rebuilds ``w_{t-1}`` after a restart: a snapshot of ``w_c`` (``"set"`` with one
        encoded ``w``, or ``"moment"`` with the K moment messages) and, in ``rounds``,
        ``(step_size, refs)`` of the peer messages of rounds ``c .. t-2``. Its refs are
        nested, so Ray fetches none of them unless they are needed.
        """
        t, kind, step_size, recovery = round_
        start = time.perf_counter()
        previous, recovered = self.w, False
        if kind == "set":
            w = self.exact.decode(payload[0])
        elif kind == "moment":
            w = algorithm.moment_start([self.exact.decode(p) for p in payload], self.plan.n)
        else:
            if self.t != t - 1:
                if recovery is None:
                    raise ReplicaLost(f"worker {self.k} holds iteration {self.t}, "
                                      f"round {t} needs {t - 1}")
                self._recover(t - 1, recovery)
                previous, recovered = self.w, True
            if kind == "delta":
                w = self.w + self.downlink.decode(payload[0])
            else:
                w = self._apply_peers(self.w, step_size, payload)
        self.w, self.t = w, t
        decode_s = time.perf_counter() - start
        # Bytes that reached this worker from elsewhere (its own message excluded).
        if kind in ("moment", "peers"):
            received = sum(len(p) for j, p in enumerate(payload) if j != self.k)
        else:
            received = len(payload[0])
        message, stats = self._evaluate(t, previous, decode_s, received, recovered)
        return message, stats.pack()

    def _apply_peers(self, w: np.ndarray, step_size: float, messages) -> np.ndarray:
        grads = [self.codec.decode(m) for m in messages]
        return algorithm.sgd_step(w, algorithm.average(grads, self.plan.weights), step_size)

    def _recover(self, t: int, recovery: Any) -> None:
        kind, refs, rounds = recovery[0]
        messages = ray.get(refs)
        if kind == "set":
            w = self.exact.decode(messages[0])
        else:
            w = algorithm.moment_start([self.exact.decode(m) for m in messages],
                                       self.plan.n)
        for step_size, refs in rounds:
            w = self._apply_peers(w, step_size, ray.get(refs))
        self.w, self.t = w, t

    def _evaluate(self, t: int, previous: np.ndarray | None, decode_s: float,
                  received: int, recovered: bool) -> tuple[bytes, RoundStats]:
        t0 = time.perf_counter()
        idx = algorithm.batch_indices(self.plan.seed, t, self.k, len(self.y),
                                      self.plan.batch_rows[self.k])
        loss, g = algorithm.evaluate(self.w, self.X, self.y, idx)
        t1 = time.perf_counter()
        message = algorithm.encode_gradient(self.codec, g, self.plan.seed, t, self.k)
        t2 = time.perf_counter()
        stats = RoundStats(
            loss=loss, compute_s=t1 - t0, encode_s=t2 - t1 + decode_s,
            rel_error=self.rel_error(self.w),
            rel_change=(algorithm.relative_change(self.w, previous)
                        if previous is not None else float("nan")),
            received_bytes=received, recovered=recovered)
        return message, stats


def spawn_workers(source: DataSource, K: int, plan: WorkerPlan, *, num_cpus: float,
                  spread: bool = False) -> list:
    """Start ``K`` restartable ``ShardWorker`` actors; each builds its own shard.

    Actors restart after a crash (``max_restarts=-1``); tasks are not retried by Ray,
    because a restarted worker first needs its replica back, which the coordinator
    sends when it resubmits the round.
    """
    options: dict[str, Any] = {"num_cpus": num_cpus, "max_restarts": -1,
                               "max_task_retries": 0}
    if spread:
        options["scheduling_strategy"] = "SPREAD"
    remote_cls = ray.remote(ShardWorker).options(**options)
    # The source is small (parameters or a path): each actor, and each restart of
    # it, rebuilds its shard from it.
    return [remote_cls.remote(source, k, K, plan) for k in range(K)]
