"""``PushingShardWorker``: the shard actor of all-to-all's ``route="push"``.

In the other routes a worker returns its gradient message to the driver, which hands
the ref to the peers' next calls. Here the worker sends the message itself: one actor
call on each peer, with the message as the argument (``deliver``). Ray carries a call
straight from the caller's process to the actor's, so the bytes go worker to worker and
the driver's link carries only the calls that start rounds and the 48-byte stats.

``deliver`` runs in its own concurrency group (one thread), so messages land while the
worker's main thread waits in ``advance`` for the K - 1 messages of round ``t - 1``.
Messages are keyed by (round, sender): a replay regenerates the very same bytes, so a
message from before a replay is as good as its replayed copy.

A replay (after a failure) starts a new *generation*: the driver calls ``connect`` on
every worker with the peers' handles and the generation's number, and every call of the
replay carries that number. A call from an older generation (queued, or waiting for a
message that a dead peer will never send) raises :class:`ReplicaLost` at once, so the
replay's calls behind it can run; a call from a newer one waits for its ``connect``
(which may arrive after it: the two run on different threads), because a restarted
worker learns its peers only from ``connect``.
"""

from __future__ import annotations

import threading

import ray

from .worker import ROUND_CALL, ReplicaLost, ShardWorker

INBOX = "inbox"     # the concurrency group of deliver and connect


class PushingShardWorker(ShardWorker):
    """A :class:`~ray_relu.worker.ShardWorker` that pushes its messages to its peers."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.peers: list = []                           # (j, handle), j != k
        self.generation = 0
        self.inbox: dict[tuple[int, int], bytes] = {}   # (round, sender) -> message
        self.changed = threading.Condition()

    @ray.method(concurrency_group=INBOX, num_returns=0)
    def connect(self, workers: list, generation: int) -> None:
        """Start ``generation``: the peers to push to, and calls before it abort."""
        with self.changed:
            if generation > self.generation:
                self.peers = [(j, w) for j, w in enumerate(workers) if j != self.k]
                self.generation = generation
                self.changed.notify_all()

    @ray.method(concurrency_group=INBOX, num_returns=0, **ROUND_CALL)
    def deliver(self, t: int, sender: int, message: bytes) -> None:
        """A peer's gradient message of round ``t``."""
        # Kept whatever the round: after a replay, messages of rounds this worker has
        # already passed come first. advance drops the ones no round needs any more.
        with self.changed:
            self.inbox[t, sender] = message
            self.changed.notify_all()

    @ray.method(num_returns=2, **ROUND_CALL)
    def advance(self, round_: tuple, *payload: bytes) -> tuple[bytes, bytes]:
        """:meth:`ShardWorker.advance` where ``round_`` is ``(t, kind, step_size,
        generation)`` and ``kind`` may be ``"inbox"``: the K - 1 peers' messages of round
        ``t - 1``, as delivered. Sends this round's message to the peers and returns an
        empty one (the driver never needs it) with the stats."""
        t, kind, step_size, generation = round_
        with self.changed:
            self.changed.wait_for(lambda: self.generation >= generation)
            if kind == "inbox":
                senders = [j for j, _ in self.peers]
                self.changed.wait_for(lambda: self.generation > generation or all(
                    (t - 1, j) in self.inbox for j in senders))
            if self.generation > generation:
                raise ReplicaLost(f"worker {self.k}: round {t} of replay generation "
                                  f"{generation} was overtaken by generation "
                                  f"{self.generation}")
            if kind == "inbox":
                payload = tuple(self.inbox.pop((t - 1, j)) for j in senders)
                kind = "peers"
                for old in [key for key in self.inbox if key[0] < t - 1]:
                    del self.inbox[old]
            peers = list(self.peers)
        message, stats = super().advance((t, kind, step_size), *payload)
        for j, peer in peers:
            peer.deliver.remote(t, self.k, message)
        return b"", stats
