"""Driver-side aggregation of the workers' encoded gradients: master and all-to-all.

Both coordinators run *rounds*. Round ``t`` brings every worker's replica to ``w_t``,
evaluates loss and gradient there, and yields one :class:`RoundRecord` (row ``t`` of
the history). All bytes are counted from the real encoded messages, where they arrive.

- :class:`MasterCoordinator`: the driver fetches the K gradients, decodes them,
  averages in worker order and takes the step, then ships ``w_{t+1}`` in the cheaper
  exact form: ``w`` itself in float64, or the K - 1 other workers' gradient messages,
  from which each worker computes the very same ``w_{t+1}`` (same decode, same order,
  same step; its own message it kept). With a downlink codec it ships the encoded
  update instead. One ``ray.get`` per round fetches the K gradients and stats. Where
  the codec's ``max_message_bytes`` proves every round relays, rounds are submitted
  ahead as in all-to-all: round ``t + 1`` takes round ``t``'s message refs.
  Bytes: uplink = the K gradient messages, downlink = what the driver shipped to the
  K workers (a restarted worker's recovery with ``w_t`` is not part of the round).
- :class:`AllToAllCoordinator`: each worker receives the K - 1 other workers' message
  refs of the previous round, Ray fetches the messages, the worker decodes, averages
  in worker order and steps its own replica; replicas stay bitwise identical. Rounds
  are submitted ahead (a window of ``PIPELINE_DEPTH``): a round's calls wait in Ray
  for the previous round's messages, not for the driver, which only reads the small
  stats as they arrive. With peer-to-peer routing the messages stay in the senders'
  object stores and the peers pull them from there (see :mod:`ray_relu.worker`);
  with relay routing (one node) Ray inlines small messages through the driver; with
  push routing each worker sends its message to its peers in an actor call of its own
  (:mod:`ray_relu.push_worker`), and the driver's calls carry no message at all.
  Bytes: peer = what each worker received from the K - 1 others; up = the replica
  snapshots sent to the driver for recovery (every ``SNAPSHOT_EVERY`` rounds).

Row ``t`` holds the bytes that crossed the wire during round ``t`` (in all-to-all, the
gradients of round ``t - 1``; the last round's gradients are never sent, so never
counted).

Worker loss: actors restart. Master: a round whose task died is resubmitted with
``w_t``. All-to-all: every worker replays from the last snapshot ``w_c`` (a replica the
driver holds): round ``c`` from ``w_c``, then rounds ``c + 1 ..`` as before. Every draw
is keyed by (seed, t, k), so the replayed rounds produce the same bytes, and the
history is unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, ObjectLostError, RayActorError

from . import algorithm
from .codecs import ErrorFeedback, FullPrecision
from .codecs.base import HEADER_SIZE
from .settings import WorkerPlan
from .worker import ReplicaLost, RoundStats

MAX_RESUBMITS = 20
SNAPSHOT_EVERY = 128
SNAPSHOT_LAG = 4
PIPELINE_DEPTH = 4
# Master relays the gradient messages (which lets it submit rounds ahead) even when that
# moves up to this many bytes more per worker and round than shipping w exactly: the
# order of a few message headers, small beside the metadata of the task call that
# carries either. Without it, fp32 at K = 3 would ship w for 29 bytes a worker.
RELAY_SLACK_BYTES = 256
# Ray copies call arguments smaller than this (its max_direct_call_object_size) into
# the task itself; larger ones go through the object store.
INLINE_BYTES = 100 * 1024
# What a dead or restarted worker, or a lost node, looks like to the driver.
RECOVERABLE = (RayActorError, ReplicaLost, ObjectLostError)


def _shipped(message: bytes) -> Any:
    """How the driver ships one message to the workers: a small one inline in each
    call (no object-store round trip; about 1.5 ms less per round on a local Ray), a
    large one with a single ``ray.put`` that every worker reads."""
    return message if len(message) < INLINE_BYTES else ray.put(message)


def _others(items: list, k: int) -> list:
    """``items`` without entry ``k`` (what worker ``k`` receives of everyone's)."""
    return items[:k] + items[k + 1:]


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


class RoundTimeoutError(TimeoutError):
    """Some workers did not answer a round within ``round_timeout`` seconds (a stalled
    link or node: a dead worker is restarted instead)."""

    def __init__(self, t: int, workers: list[int], timeout: float) -> None:
        self.round, self.workers, self.timeout = t, workers, timeout
        names = ", ".join(map(str, workers))
        super().__init__(f"round {t}: no answer from worker{'s' if len(workers) > 1 else ''} "
                         f"{names} within round_timeout={timeout:g} s")


class _Coordinator:
    """Shared machinery: the run's constants, the history row, replica checks."""

    def __init__(self, workers: list, plan: WorkerPlan, step_size: float,
                 w_star: np.ndarray | None, round_timeout: float | None = None) -> None:
        self.workers, self.plan, self.step_size = workers, plan, step_size
        self.round_timeout = round_timeout
        self.K = len(workers)
        self.rel_error = plan.model.error_meter(w_star)
        self.codec = plan.codec
        self.feedback = isinstance(self.codec, ErrorFeedback)
        self.exact = FullPrecision("float64")
        self.restarts = 0
        self.t = -1                      # the last round whose record was returned

    def _get(self, refs: list, t: int, owners: list[int]) -> list:
        """``ray.get(refs)``, or a :class:`RoundTimeoutError` naming the workers
        (``owners[i]`` owns ``refs[i]``) still silent after ``round_timeout``."""
        if self.round_timeout is None:
            return ray.get(refs)
        try:
            return ray.get(refs, timeout=self.round_timeout)
        except GetTimeoutError:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            done = set(ready)
            late = sorted({owners[i] for i, ref in enumerate(refs) if ref not in done})
            raise RoundTimeoutError(t, late, self.round_timeout) from None

    def _residual_messages(self, t: int) -> list[bytes]:
        """Every worker's error-feedback memory of round ``t``, encoded exactly."""
        return self._get([wk.residual_message.remote(t) for wk in self.workers], t,
                         list(range(self.K)))

    def _decoded(self, messages: list) -> np.ndarray:
        return np.array([self.exact.decode(m if isinstance(m, bytes) else ray.get(m))
                         for m in messages])

    def _weighted(self, values: list[float]) -> float:
        return float(sum(wk * v for wk, v in zip(self.plan.weights, values)))

    def replica_divergence(self) -> float:
        """``max_k max_i |w_t^(k) - w_t^(0)|`` over the workers' replicas of the last
        recorded round. Worker 0's replica goes to the others, which compare: replicas
        never cross the driver's link (on a cluster, K x 8d bytes would)."""
        def ask() -> float:
            ref = self.workers[0].replica_at.remote(self.t)
            return max(self._get([wk.max_abs_difference.remote(self.t, ref)
                                  for wk in self.workers[1:]], self.t,
                                 list(range(1, self.K))), default=0.0)
        return self._asking(ask)

    def _asking(self, ask: Callable[[], Any]) -> Any:
        """``ask()`` the workers about the last recorded round; if one died since
        (it restarts without its replica), bring every worker back to that round the
        way a round's recovery does, and ask again."""
        for attempt in range(MAX_RESUBMITS + 1):
            try:
                if attempt:
                    self._restore(self.t)
                return ask()
            except RECOVERABLE as exc:
                self._give_up(self.t, attempt, exc)

    def _restore(self, t: int) -> None:
        """Bring every worker's replica back to round ``t`` (after a restart)."""
        raise NotImplementedError

    def _give_up(self, t: int, attempt: int, exc: Exception) -> None:
        if attempt >= MAX_RESUBMITS:
            raise WorkerLostError(f"round {t} failed {attempt + 1} times; "
                                  f"last error: {exc}") from exc
        self.restarts += 1

    def _record(self, t: int, stats: list[RoundStats], wall_s: float, rel_error: float,
                rel_change: float, up: int, down: int, peer: int,
                driver_codec_s: float = 0.0) -> RoundRecord:
        self.t = t
        compute = max(s.compute_s for s in stats)
        encode = max(s.encode_s for s in stats) + driver_codec_s
        return RoundRecord(t, self._weighted([s.loss for s in stats]), rel_error,
                           rel_change, up, down, peer, compute, encode,
                           max(0.0, wall_s - compute - encode), wall_s)


class MasterCoordinator(_Coordinator):
    """The driver aggregates and steps; workers evaluate at the ``w`` it ships."""

    def __init__(self, workers, plan, step_size, w_star, round_timeout=None,
                 last_round: int | None = None) -> None:
        super().__init__(workers, plan, step_size, w_star, round_timeout)
        self.downlink = plan.downlink
        self.last_round = last_round
        # Rounds submitted ahead (t -> the K (message, stats) ref pairs): only where
        # every round t + 1 relays round t's messages, whatever they hold, so its
        # calls can take their refs before the driver has seen them.
        self._ahead: dict[int, list] = {}
        self.pipelined = last_round is not None and self._always_relays()
        self.w: np.ndarray | None = None          # w_{t+1}: what the next round ships
        self._next: tuple[str, list] = ("set", [])   # its kind and per-worker payloads
        self._next_bytes = 0                      # and their total size
        self.current: np.ndarray | None = None    # w_t of the last round
        self._previous: np.ndarray | None = None
        self.downlink_residual: np.ndarray | None = None    # the master's own memory
        # Error feedback: a restarted worker cannot be sent w_t alone, it also needs its
        # memory. The driver keeps a snapshot (the state after some round s, with every
        # worker's memory, refreshed every SNAPSHOT_EVERY rounds) and what it shipped
        # in each round since, and replays the restarted worker from there.
        self._snap: dict | None = None
        self._log: dict[int, tuple[str, list]] = {}

    def start(self, t: int, w0: np.ndarray | None) -> RoundRecord:
        """Round ``t`` from ``w0``, or from the data initialization when None."""
        begin = time.perf_counter()
        up = 0
        if w0 is None:
            messages = ray.get([wk.statistic_message.remote() for wk in self.workers])
            up = sum(len(m) for m in messages)
            w0 = algorithm.data_start(self.plan, [self.exact.decode(m) for m in messages])
        self._set(np.array(w0, dtype=np.float64))
        self._take_snapshot(t - 1, None, None)
        record = self.next_round(t)
        record.bytes_up += up
        record.wall_s = time.perf_counter() - begin
        return record

    def _always_relays(self) -> bool:
        """Whether :meth:`_ship_exact` relays the gradient messages in every round,
        known from the codec's bound on their length (never with error feedback or a
        downlink codec: those rounds ship what the driver computes)."""
        if self.feedback or self.downlink is not None:
            return False
        n = self.plan.model.num_params(self.plan.d)
        bound = self.codec.max_message_bytes(n)
        return bound is not None and self._relay_is_shorter((self.K - 1) * self.K * bound, n)

    def _relay_is_shorter(self, relayed: int, n: int) -> bool:
        """Whether relaying ``relayed`` bytes of gradient messages moves fewer bytes
        than shipping ``w`` (``n`` float64 numbers) exactly to each of the K workers,
        give or take :data:`RELAY_SLACK_BYTES` a worker."""
        return relayed < self.K * (HEADER_SIZE + 8 * n + RELAY_SLACK_BYTES)

    def _set(self, w: np.ndarray) -> None:
        self.w = w
        encoded = self.exact.encode(w)
        self._ship("set", [[_shipped(encoded)]] * self.K, self.K * len(encoded))

    def _ship(self, kind: str, payloads: list, total_bytes: int) -> None:
        self._next, self._next_bytes = (kind, payloads), total_bytes

    def next_round(self, t: int) -> RoundRecord:
        begin = time.perf_counter()
        down = self._next_bytes
        pending = self._ahead.pop(t, None)
        if pending is None:
            kind, payloads = self._next
            pending = [self.workers[k].advance.remote((t, kind, self.step_size),
                                                      *payloads[k]) for k in range(self.K)]
        if self.pipelined:
            self._submit_ahead(t, pending)
        stats, messages = self._collect(t, pending)
        codec_begin = time.perf_counter()
        g = algorithm.average([self.codec.decode(m) for m in messages], self.plan.weights)
        w_t = self.w
        if self.downlink is not None:
            delta, value, self.downlink_residual = algorithm.compress_downlink(
                self.downlink, -self.step_size * g, self.downlink_residual,
                self.plan.seed, t)
            self.w = w_t + value
            self._ship("delta", [[_shipped(delta)]] * self.K, self.K * len(delta))
        else:
            self._ship_exact(algorithm.sgd_step(w_t, g, self.step_size), messages)
        driver_codec_s = time.perf_counter() - codec_begin
        rel_err = self.rel_error(w_t)
        change = (algorithm.relative_change(w_t, self._previous)
                  if self._previous is not None else float("nan"))
        self._previous = self.current = w_t
        up = sum(len(m) for m in messages)
        if self.feedback:
            up += self._keep_for_replay(t, w_t, messages)
        return self._record(t, stats, time.perf_counter() - begin, rel_err, change,
                            up, down, 0, driver_codec_s)

    def _submit_ahead(self, t: int, pending: list) -> None:
        """Submit rounds ``t + 1 ..`` (up to ``PIPELINE_DEPTH - 1`` ahead, never past
        ``last_round``) as relays of the previous round's message refs: Ray orders
        each worker's calls and hands a call its peers' messages when they exist."""
        previous = pending
        for r in range(t + 1, min(t + PIPELINE_DEPTH - 1, self.last_round) + 1):
            if r not in self._ahead:
                refs = [message for message, _ in previous]
                self._ahead[r] = [
                    self.workers[k].advance.remote((r, "peers", self.step_size),
                                                   *_others(refs, k))
                    for k in range(self.K)]
            previous = self._ahead[r]

    def _keep_for_replay(self, t: int, w_t: np.ndarray, messages: list[bytes]) -> int:
        """Log how round ``t + 1``'s replicas follow from round ``t`` (error feedback),
        and refresh the snapshot every ``SNAPSHOT_EVERY`` rounds; return the bytes the
        snapshot's memories took (a fixed round's uplink, so histories stay exact)."""
        if self.downlink is not None or self._next[0] == "peers":
            self._log[t + 1] = self._next       # what round t + 1 ships is replayable
        else:                                   # it ships w itself: log the messages
            shipped = [_shipped(m) for m in messages]
            self._log[t + 1] = "peers", [_others(shipped, k) for k in range(self.K)]
        if (t + 1) % SNAPSHOT_EVERY:
            return 0
        residuals = self._residual_messages(t + 1)
        self._take_snapshot(t, w_t, residuals)
        return sum(len(m) for m in residuals)

    def _take_snapshot(self, t: int, w_t: np.ndarray | None,
                       residuals: list | None) -> None:
        """Remember the state after round ``t`` (the next round's w, its bytes, every
        worker's memory) and forget the log before it."""
        if not self.feedback:
            return
        self._snap = {"after": t, "w": w_t, "next_w": self.w, "next_bytes": self._next_bytes,
                      "residuals": residuals,
                      "downlink_residual": None if self.downlink_residual is None
                      else self.downlink_residual.copy()}
        self._log = {}

    def _replay_worker(self, k: int, t: int) -> tuple:
        """Bring restarted worker ``k`` from the snapshot to round ``t`` (its calls run
        in order on the actor); return the refs of its round-``t`` call."""
        first = self._snap["after"] + 1
        payload = [_shipped(self.exact.encode(self._snap["next_w"]))]
        if self._snap["residuals"] is not None:
            payload.append(self._snap["residuals"][k])
        refs = self.workers[k].advance.remote((first, "set", self.step_size), *payload)
        for r in range(first + 1, t + 1):
            kind, payloads = self._log[r]
            refs = self.workers[k].advance.remote((r, kind, self.step_size), *payloads[k])
        return refs

    def _ship_exact(self, w_next: np.ndarray, messages: list[bytes]) -> None:
        """Ship ``w_{t+1}`` exactly, in whichever form moves fewer bytes: ``w`` in
        float64 to every worker, or to each worker the others' gradient messages."""
        relayed = (self.K - 1) * sum(len(m) for m in messages)
        if self._relay_is_shorter(relayed, w_next.size):
            self.w = w_next
            shipped = [_shipped(m) for m in messages]
            self._ship("peers", [_others(shipped, k) for k in range(self.K)], relayed)
        else:
            if self.pipelined:              # rounds ahead already relay: a broken bound
                raise RuntimeError(f"{self.codec!r} wrote a message longer than its "
                                   f"max_message_bytes")
            self._set(w_next)

    def _get_pairs(self, calls: list, t: int) -> list:
        """The values of the K ``advance`` calls of round ``t`` (one (message, stats)
        pair of refs per worker), flattened, with one ``ray.get``."""
        return self._get([ref for pair in calls for ref in pair], t,
                         [k for k in range(self.K) for _ in (0, 1)])

    def _collect(self, t: int, pending: list) -> tuple[list[RoundStats], list[bytes]]:
        """The K stats and messages of round ``t``; a failed task is resubmitted to its
        (restarted) worker with ``w_t`` itself. A healthy round costs one ``ray.get``."""
        try:
            values = self._get_pairs(pending, t)
            return ([RoundStats.unpack(v) for v in values[1::2]], list(values[0::2]))
        except RECOVERABLE:
            pass
        # The rounds submitted ahead hang on this round's lost messages: they fail in
        # Ray, and are submitted again from what this round recovers.
        self._ahead.clear()
        stats, messages = [None] * self.K, [None] * self.K
        recovery = None
        for k in range(self.K):
            for attempt in range(MAX_RESUBMITS + 1):
                try:
                    messages[k], packed = self._get(list(pending[k]), t, [k, k])
                    stats[k] = RoundStats.unpack(packed)
                    break
                except RECOVERABLE as exc:
                    self._give_up(t, attempt, exc)
                    if self.feedback:
                        pending[k] = self._replay_worker(k, t)
                        continue
                    recovery = recovery or _shipped(self.exact.encode(self.w))
                    pending[k] = self.workers[k].advance.remote((t, "set", 0.0), recovery)
        return stats, messages

    def current_w(self) -> np.ndarray:
        """``w_t`` of the last completed round."""
        return self.current.copy()

    def _restore(self, t: int) -> None:
        self._ahead.clear()
        if self.feedback:
            calls = [self._replay_worker(k, t) for k in range(self.K)]
        else:
            w_t = _shipped(self.exact.encode(self.current))
            calls = [wk.advance.remote((t, "set", 0.0), w_t) for wk in self.workers]
        self._get_pairs(calls, t)

    def driver_state(self) -> tuple[int, np.ndarray, dict] | None:
        """``(t, w_t, continuation)`` of the last completed round, from what the driver
        holds (no worker is asked: they may be unreachable). With error feedback the
        workers' memories are known only at the snapshot, so that is the state."""
        if self.feedback:
            snap = self._snap
            if snap is None or snap["w"] is None:
                return None
            return snap["after"], snap["w"].copy(), {
                "next_w": snap["next_w"].copy(), "next_bytes": snap["next_bytes"],
                "residuals": self._decoded(snap["residuals"]),
                "downlink_residual": snap["downlink_residual"]}
        if self.current is None:
            return None
        return self.t, self.current_w(), self.continuation()

    def continuation(self) -> dict:
        """What a checkpoint needs to continue after the last round: ``w_{t+1}``, the
        bytes the next round ships (fresh workers get ``w_{t+1}`` itself instead) and,
        with error feedback, every memory for round ``t + 1`` (asked of the workers)."""
        state = {"next_w": self.w.copy(), "next_bytes": self._next_bytes,
                 "downlink_residual": self.downlink_residual}
        if self.feedback:
            state["residuals"] = self._decoded(
                self._asking(lambda: self._residual_messages(self.t + 1)))
        return state

    def resume(self, t: int, w_t: np.ndarray, continuation: dict) -> None:
        """Continue after round ``t`` from ``w_t`` and what :meth:`continuation` gave."""
        self.current, self._previous = w_t.copy(), w_t.copy()
        self._set(continuation["next_w"].copy())
        residuals = continuation.get("residuals")
        if residuals is not None:
            memories = [_shipped(self.exact.encode(r)) for r in residuals]
            kind, payloads = self._next
            self._ship(kind, [p + [m] for p, m in zip(payloads, memories)],
                       self._next_bytes)
        if continuation.get("downlink_residual") is not None:
            self.downlink_residual = np.array(continuation["downlink_residual"])
        self._next_bytes = continuation.get("next_bytes") or self._next_bytes
        self._take_snapshot(t, self.current, memories if residuals is not None else None)
        self.t = t


class AllToAllCoordinator(_Coordinator):
    """Workers exchange encoded gradients directly; the driver only moves refs."""

    def __init__(self, workers, plan, step_size, w_star, last_round: int,
                 round_timeout=None, push: bool = False) -> None:
        super().__init__(workers, plan, step_size, w_star, round_timeout)
        self.last_round = last_round
        # route="push": the workers send their messages to their peers themselves
        # (ray_relu.push_worker); every replay starts a new generation of calls.
        self.push = push
        self.generation = 0
        self._rounds: dict[int, tuple[list, list]] = {}   # t -> (message, stats refs)
        self._submitted = -1
        # (round c, kind, payload, memories): payload brings every replica to w_c;
        # memories (error feedback only) hold each worker's memory of round c.
        self._snapshot: tuple[int, str, list, list | None] | None = None
        self._pending_snapshot: tuple[int, Any, list | None] | None = None
        self._snapshot_bytes = 0          # snapshot bytes received, not yet recorded
        self._start: tuple[int, str] = (-1, "")   # the first round and how it started

    def start(self, t: int, w0: np.ndarray | None) -> RoundRecord:
        """Round ``t`` from ``w0``, or from the data initialization when None."""
        if w0 is None:
            # Shard statistics are exchanged like gradients: K refs to every worker.
            self._snapshot = (t, "statistic",
                              [wk.statistic_message.remote() for wk in self.workers], None)
        else:
            message = self.exact.encode(np.asarray(w0, dtype=np.float64))
            self._snapshot = (t, "set", [_shipped(message)], None)
        self._start = self._snapshot[:2]
        self._replay(t)
        return self.next_round(t)

    def resume(self, t: int, w_t: np.ndarray, continuation: dict) -> None:
        """Continue after round ``t`` from ``w_t``: the workers replay round ``t`` from
        it (the same messages as the first time), then go on. ``continuation`` may say
        ``data_init=True`` (the run started from a data initialization) and, with
        error feedback, must hold ``residuals``, every worker's memory of round ``t``."""
        residuals = continuation.get("residuals")
        memories = None if residuals is None else \
            [_shipped(self.exact.encode(r)) for r in residuals]
        self._snapshot = (t, "set", [_shipped(self.exact.encode(w_t))], memories)
        self._replay(t)
        self.t = t
        # Ask for the snapshot the uninterrupted run asked for at round t (see
        # _rotate_snapshot), so that its bytes land in the same history row.
        if t % SNAPSHOT_EVERY == 0 and (t > 0 or continuation.get("data_init")):
            self._request_snapshot(t)

    def next_round(self, t: int) -> RoundRecord:
        begin = time.perf_counter()
        while self._submitted < min(t + PIPELINE_DEPTH - 1, self.last_round):
            self._submit(self._submitted + 1)
        stats = self._collect(t)
        self._rotate_snapshot(t)
        kind = self._start[1] if t == self._start[0] else "peers"
        received = sum(s.received_bytes for s in stats)
        # A driver-chosen start w is downlink; everything else moves between workers.
        down, peer = (received, 0) if kind == "set" else (0, received)
        up, self._snapshot_bytes = self._snapshot_bytes, 0
        first = stats[0]
        return self._record(t, stats, time.perf_counter() - begin, first.rel_error,
                            first.rel_change, up, down, peer)

    def _submit(self, t: int) -> None:
        """Submit round ``t``: worker ``k`` gets the others' message refs of ``t - 1``
        (with push, the workers have them delivered)."""
        if self.push:
            calls = [wk.advance.remote((t, "inbox", self.step_size, self.generation))
                     for wk in self.workers]
        else:
            previous = self._rounds[t - 1][0]
            calls = [self.workers[k].advance.remote((t, "peers", self.step_size),
                                                    *_others(previous, k))
                     for k in range(self.K)]
        self._rounds[t] = ([m for m, _ in calls], [s for _, s in calls])
        self._submitted = t

    def _replay(self, through: int) -> None:
        """Submit round ``c`` from the snapshot, then rounds ``c + 1 .. through``."""
        c, kind, payload, memories = self._snapshot
        round_c: tuple = (c, kind, 0.0)
        if self.push:
            self.generation += 1
            for wk in self.workers:
                wk.connect.remote(self.workers, self.generation)
            round_c += (self.generation,)
        calls = [wk.advance.remote(round_c, *payload,
                                   *([] if memories is None else [memories[k]]))
                 for k, wk in enumerate(self.workers)]
        self._rounds = {c: ([m for m, _ in calls], [s for _, s in calls])}
        self._submitted = c
        while self._submitted < through:
            self._submit(self._submitted + 1)

    def _collect(self, t: int) -> list[RoundStats]:
        """The K stats of round ``t``; after a failure, replay and try again."""
        for attempt in range(MAX_RESUBMITS + 1):
            try:
                try:
                    stats = [RoundStats.unpack(v) for v in
                             self._get(self._rounds[t][1], t, list(range(self.K)))]
                except RoundTimeoutError as exc:
                    raise RoundTimeoutError(t, self._silent(t) or exc.workers,
                                            exc.timeout) from None
                break
            except RECOVERABLE as exc:
                self._give_up(t, attempt, exc)
                self._replay(t)
        for old in [r for r in self._rounds if r < t]:
            del self._rounds[old]        # frees the messages no later round needs
        return stats

    def _silent(self, t: int) -> list[int]:
        """The workers whose gradient message of the earliest unfinished round up to
        ``t`` is missing: a silent worker holds up every peer's next round, so only
        its own messages tell it apart."""
        for r in sorted(r for r in self._rounds if r <= t):
            messages = self._rounds[r][0]
            ready, _ = ray.wait(messages, num_returns=len(messages), timeout=0,
                                fetch_local=False)
            done = set(ready)
            missing = [k for k, ref in enumerate(messages) if ref not in done]
            if missing:
                return missing
        return []

    def _rotate_snapshot(self, t: int) -> None:
        """Keep the driver's snapshot recent: ask worker 0 for ``w_c`` every
        ``SNAPSHOT_EVERY`` rounds (and at once after a data-init start, whose messages
        may live on the workers' nodes), and adopt it ``SNAPSHOT_LAG`` rounds later,
        by then long arrived: a fixed round, so the history's bytes are deterministic."""
        if self._pending_snapshot is not None and t >= self._pending_snapshot[0] + SNAPSHOT_LAG:
            c = self._pending_snapshot[0]
            try:
                message, memories = self._fetch_snapshot()
            except RECOVERABLE:
                # A worker died with the request queued. Round t was just collected,
                # so every worker is back and still holds round c: ask again.
                self._request_snapshot(c)
                try:
                    message, memories = self._fetch_snapshot()
                except RECOVERABLE:
                    return               # lost again: keep the older snapshot
            self._snapshot = (c, "set", [_shipped(message)],
                              None if memories is None else [_shipped(m) for m in memories])
            self._snapshot_bytes += len(message) + sum(len(m) for m in memories or [])
        c, kind = self._snapshot[:2]
        if t % SNAPSHOT_EVERY == 0 and self._pending_snapshot is None \
                and (c < t or kind != "set"):
            self._request_snapshot(t)

    def _fetch_snapshot(self) -> tuple[bytes, list[bytes] | None]:
        _, ref, memory_refs = self._pending_snapshot
        self._pending_snapshot = None
        return ray.get(ref), None if memory_refs is None else ray.get(memory_refs)

    def _request_snapshot(self, t: int) -> None:
        """Ask worker 0 for ``w_t`` and, with error feedback, every worker for its
        memory of round ``t``."""
        memories = ([wk.residual_message.remote(t) for wk in self.workers]
                    if self.feedback else None)
        self._pending_snapshot = (t, self.workers[0].replica_message.remote(t), memories)

    def current_w(self) -> np.ndarray:
        """``w_t`` of the last recorded round (all replicas are identical)."""
        return self._asking(lambda: self._get([self.workers[0].replica_at.remote(self.t)],
                                              self.t, [0])[0])

    def _restore(self, t: int) -> None:
        self._replay(t)
        self._get(self._rounds[t][1], t, list(range(self.K)))

    def driver_state(self) -> tuple[int, np.ndarray, dict] | None:
        """``(c, w_c, continuation)`` of the driver's snapshot (no worker is asked: they
        may be unreachable); None before the first snapshot of an exact ``w``."""
        c, kind, payload, memories = self._snapshot
        if kind != "set" or c > self.t or (self.feedback and memories is None and c > 0):
            return None
        state = {} if memories is None else {"residuals": self._decoded(memories)}
        return c, self._decoded(payload)[0], state

    def continuation(self) -> dict:
        """Resuming replays round ``t`` from ``w_t``; with error feedback it also needs
        every worker's memory of round ``t`` (asked of the workers)."""
        if not self.feedback:
            return {}
        return {"residuals": self._decoded(
            self._asking(lambda: self._residual_messages(self.t)))}
