"""Driver-side aggregation of the workers' encoded gradients: master and all-to-all.

Both coordinators run *rounds*. Round ``t`` brings every worker's replica to ``w_t``,
evaluates loss and gradient there, and yields one :class:`RoundRecord` (row ``t`` of
the history). All bytes are counted from the real encoded messages.

- :class:`MasterCoordinator`: the driver decodes the K gradients, averages them in
  worker order and takes the step. It ships ``w_{t+1}`` (full precision, default) or,
  with a downlink codec, the encoded update: inline in the K calls when it is small,
  else with one ``ray.put`` per round. One ``ray.get`` per round fetches the K
  gradients and stats together.
  Bytes: uplink = the K gradient messages, downlink = the copies the K workers
  received (K x the downlink message).
- :class:`AllToAllCoordinator`: each worker receives the K object refs of the previous
  round, fetches the messages from the object store, decodes, averages in worker order
  and steps its own replica; replicas stay bitwise identical. The driver moves refs
  and small stats, never gradient bytes (Ray inlines objects under 100 KiB into task
  replies; larger ones go from worker to worker through the object store).
  Bytes: peer = what each worker received from the K - 1 others.

Bytes are counted where they arrive, from the real messages: row ``t`` holds the bytes
that crossed the wire during round ``t`` (in all-to-all, the gradients of round
``t - 1``; the last round's gradients are never sent, so never counted).

Worker loss: actors restart, and a round whose task died (or whose restarted worker
lost its replica) is resubmitted with what rebuilds the replica: the master's current
``w``, or in all-to-all a snapshot plus the logged peer messages since it. Every draw is
keyed by (seed, t, k), so the resubmitted round produces the same bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import ray
from ray.exceptions import RayActorError

from . import algorithm
from .codecs import FullPrecision, get_codec
from .settings import WorkerPlan
from .worker import ReplicaLost, RoundStats

MAX_RESUBMITS = 20
SNAPSHOT_EVERY = 32
# Ray copies call arguments smaller than this (its max_direct_call_object_size) into
# the task itself; larger ones go through the object store.
INLINE_BYTES = 100 * 1024


def _shipped(message: bytes) -> Any:
    """How the master ships one message to all K workers: a small one inline in each
    call (no object-store round trip; about 1.5 ms less per round on a local Ray), a
    large one with a single ``ray.put`` that every worker reads."""
    return message if len(message) < INLINE_BYTES else ray.put(message)


@dataclass
class RoundRecord:
    """What one round measured: row ``t`` of the history."""

    iteration: int
    loss: float
    rel_error: float
    rel_change: float
    bytes_up: int
    bytes_down: int
    bytes_peer: int
    compute_s: float
    encode_s: float
    comm_s: float
    wall_s: float


class WorkerLostError(RuntimeError):
    """A worker kept failing after repeated restarts."""


class _Coordinator:
    """Shared machinery: submit one call per worker, collect, resubmit on failure."""

    def __init__(self, workers: list, plan: WorkerPlan, step_size: float,
                 w_star: np.ndarray | None) -> None:
        self.workers, self.plan, self.step_size = workers, plan, step_size
        self.K = len(workers)
        self.w_star = w_star
        self.rel_error = algorithm.error_meter(w_star)
        self.codec = get_codec(plan.codec)
        self.exact = FullPrecision("float64")
        self.restarts = 0

    def _collect(self, t: int, submit: Callable[[int, Any], tuple],
                 recovery_for: Callable[[int], Any],
                 fetch_messages: bool = False) -> tuple[list, list[RoundStats], list | None]:
        """Submit round ``t`` to every worker; resubmit failures with recovery info.

        Returns the message refs, the workers' :class:`RoundStats` and, with
        ``fetch_messages``, the messages themselves (else None), all in worker order.
        A healthy round costs one ``ray.get`` for everything; only a failed round
        falls back to worker by worker collection with resubmission.
        """
        pending = [submit(k, None) for k in range(self.K)]
        wanted = [stats_ref for _, stats_ref in pending]
        if fetch_messages:
            wanted += [msg_ref for msg_ref, _ in pending]
        try:
            values = ray.get(wanted)
        except (RayActorError, ReplicaLost):
            return self._collect_each(t, pending, submit, recovery_for, fetch_messages)
        refs = [msg_ref for msg_ref, _ in pending]
        stats = [RoundStats.unpack(v) for v in values[:self.K]]
        return refs, stats, (values[self.K:] if fetch_messages else None)

    def _collect_each(self, t: int, pending: list, submit: Callable[[int, Any], tuple],
                      recovery_for: Callable[[int], Any],
                      fetch_messages: bool) -> tuple[list, list[RoundStats], list | None]:
        """:meth:`_collect` after a failure: worker by worker, resubmitting failures."""
        refs, stats = [None] * self.K, [None] * self.K
        messages = [None] * self.K if fetch_messages else None
        for k in range(self.K):
            for attempt in range(MAX_RESUBMITS + 1):
                msg_ref, stats_ref = pending[k]
                try:
                    stats[k] = RoundStats.unpack(ray.get(stats_ref))
                    if fetch_messages:
                        messages[k] = ray.get(msg_ref)
                    refs[k] = msg_ref
                    break
                except (RayActorError, ReplicaLost) as exc:
                    if attempt == MAX_RESUBMITS:
                        raise WorkerLostError(f"worker {k} failed {attempt + 1} times in "
                                              f"round {t}; last error: {exc}") from exc
                    self.restarts += 1
                    pending[k] = submit(k, recovery_for(k))
        return refs, stats, messages

    def _weighted(self, values: list[float]) -> float:
        return float(sum(wk * v for wk, v in zip(self.plan.weights, values)))

    def replicas(self) -> list[np.ndarray]:
        """Every worker's replica of ``w`` (fetched; for divergence checks)."""
        return ray.get([wk.replica.remote() for wk in self.workers])

    def _record(self, t: int, stats: list[RoundStats], wall_s: float, rel_error: float,
                rel_change: float, up: int, down: int, peer: int,
                driver_codec_s: float = 0.0) -> RoundRecord:
        compute = max(s.compute_s for s in stats)
        encode = max(s.encode_s for s in stats) + driver_codec_s
        return RoundRecord(t, self._weighted([s.loss for s in stats]), rel_error,
                           rel_change, up, down, peer, compute, encode,
                           max(0.0, wall_s - compute - encode), wall_s)


class MasterCoordinator(_Coordinator):
    """The driver aggregates and steps; workers evaluate at the ``w`` it ships."""

    def __init__(self, workers, plan, step_size, w_star) -> None:
        super().__init__(workers, plan, step_size, w_star)
        self.downlink = get_codec(plan.downlink) if plan.downlink else None
        self.w: np.ndarray | None = None
        self._next: tuple[str, bytes] | None = None   # what round t+1 ships
        self._previous: np.ndarray | None = None

    def start(self, t: int, w0: np.ndarray | None) -> RoundRecord:
        """Round ``t`` from ``w0``, or from the moment initialization when None."""
        begin = time.perf_counter()
        up = 0
        if w0 is None:
            messages = ray.get([wk.moment_message.remote() for wk in self.workers])
            up = sum(len(m) for m in messages)
            w0 = algorithm.moment_start([self.exact.decode(m) for m in messages],
                                        self.plan.n)
        self.w = np.array(w0, dtype=np.float64)
        self._next = ("set", self.exact.encode(self.w))
        record = self.next_round(t)
        record.bytes_up += up
        record.wall_s = time.perf_counter() - begin
        return record

    def next_round(self, t: int) -> RoundRecord:
        begin = time.perf_counter()
        kind, message = self._next
        payload = _shipped(message)

        def submit(k, recovery):
            if recovery is not None:   # a restarted worker: just ship it w_t itself
                return self.workers[k].advance.remote((t, "set", 0.0, None), recovery)
            return self.workers[k].advance.remote((t, kind, self.step_size, None), payload)

        _, stats, messages = self._collect(
            t, submit, lambda k: _shipped(self.exact.encode(self.w)), fetch_messages=True)
        codec_begin = time.perf_counter()
        g = algorithm.average([self.codec.decode(m) for m in messages], self.plan.weights)
        w_t = self.w
        if self.downlink is None:
            w_next = algorithm.sgd_step(w_t, g, self.step_size)
            self._next = ("set", self.exact.encode(w_next))
        else:
            delta = algorithm.encode_downlink(self.downlink, -self.step_size * g,
                                              self.plan.seed, t)
            w_next = w_t + self.downlink.decode(delta)
            self._next = ("delta", delta)
        driver_codec_s = time.perf_counter() - codec_begin
        rel_err = self.rel_error(w_t)
        change = (algorithm.relative_change(w_t, self._previous)
                  if self._previous is not None else float("nan"))
        self._previous, self.w = w_t, w_next
        self.current = w_t
        up = sum(len(m) for m in messages)
        down = sum(s.received_bytes for s in stats)
        return self._record(t, stats, time.perf_counter() - begin, rel_err, change,
                            up, down, 0, driver_codec_s)

    def current_w(self) -> np.ndarray:
        """``w_t`` of the last completed round."""
        return self.current.copy()

    def continuation(self) -> dict:
        """What a checkpoint needs to continue after the last round: ``w_{t+1}``."""
        return {"next_w": self.w.copy()}

    def resume(self, w_t: np.ndarray, next_w: np.ndarray) -> None:
        """Continue from a checkpoint taken after round ``t``."""
        self.current, self._previous = w_t.copy(), w_t.copy()
        self.w = next_w.copy()
        self._next = ("set", self.exact.encode(self.w))


class AllToAllCoordinator(_Coordinator):
    """Workers exchange encoded gradients directly; the driver only moves refs."""

    def __init__(self, workers, plan, step_size, w_star) -> None:
        super().__init__(workers, plan, step_size, w_star)
        self._refs: list = []            # message refs of the last round
        self._snapshot: tuple | None = None     # (kind, refs, round c)
        self._pending_snapshot: tuple | None = None
        self._log: list[tuple[int, float, list]] = []   # (round, step, refs)
        self._force_recovery = False

    def start(self, t: int, w0: np.ndarray | None) -> RoundRecord:
        """Round ``t`` from ``w0``, or from the moment initialization when None."""
        begin = time.perf_counter()
        if w0 is None:
            # Moment sums are exchanged like gradients: K refs to every worker.
            kind, payload = "moment", [wk.moment_message.remote() for wk in self.workers]
        else:
            kind = "set"
            payload = [ray.put(self.exact.encode(np.asarray(w0, dtype=np.float64)))]
        self._snapshot = (kind, payload, t)

        def submit(k, recovery):
            return self.workers[k].advance.remote((t, kind, 0.0, None), *payload)

        refs, stats, _ = self._collect(t, submit, lambda k: None)
        return self._finish(t, refs, stats, time.perf_counter() - begin, kind)

    def next_round(self, t: int) -> RoundRecord:
        begin = time.perf_counter()
        previous = self._refs

        forced = [self._recovery(t)] if self._force_recovery else None
        self._force_recovery = False

        def submit(k, recovery):
            return self.workers[k].advance.remote((t, "peers", self.step_size,
                                                   recovery or forced), *previous)

        refs, stats, _ = self._collect(t, submit, lambda k: [self._recovery(t)])
        return self._finish(t, refs, stats, time.perf_counter() - begin, "peers")

    def _recovery(self, t: int) -> tuple:
        """What rebuilds ``w_{t-1}``: the snapshot ``w_c`` and the messages of ``c..t-2``."""
        kind, refs, c = self._snapshot
        rounds = [(step, msgs) for r, step, msgs in self._log if c <= r <= t - 2]
        return (kind, refs, rounds)

    def _finish(self, t: int, refs: list, stats: list[RoundStats], wall_s: float,
                kind: str) -> RoundRecord:
        self._refs = refs
        self._log.append((t, self.step_size, refs))
        self._rotate_snapshot(t, stats)
        received = sum(s.received_bytes for s in stats)
        # A driver-chosen start w is downlink; everything else moves between workers.
        down, peer = (received, 0) if kind == "set" else (0, received)
        first = stats[0]
        return self._record(t, stats, wall_s, first.rel_error, first.rel_change,
                            0, down, peer)

    def _rotate_snapshot(self, t: int, stats: list[RoundStats]) -> None:
        # A snapshot asked of worker 0 after round c is committed once worker 0 has
        # finished the next round normally: then the snapshot call surely ran.
        if self._pending_snapshot is not None:
            ref, c = self._pending_snapshot
            self._pending_snapshot = None
            if not stats[0].recovered:
                self._snapshot = ("set", [ref], c)
                self._log = [e for e in self._log if e[0] >= c]
        if t % SNAPSHOT_EVERY == 0:
            self._pending_snapshot = (self.workers[0].replica_message.remote(), t)

    def current_w(self) -> np.ndarray:
        """Worker 0's replica (all replicas are identical)."""
        return ray.get(self.workers[0].replica.remote())

    def continuation(self) -> dict:
        """What a checkpoint needs to continue: the K messages of the last round."""
        return {"messages": ray.get(self._refs)}

    def resume(self, t: int, w_t: np.ndarray, messages: list[bytes]) -> None:
        """Continue from a checkpoint taken after round ``t``: fresh workers rebuild
        ``w_t`` from it, then apply round ``t``'s messages like any other round."""
        self._snapshot = ("set", [ray.put(self.exact.encode(w_t))], t)
        self._refs = [ray.put(m) for m in messages]
        self._log = [(t, self.step_size, self._refs)]
        self._force_recovery = True

