"""Bare all-to-all transports, run by a driver on the emulated cluster's head.

``python -m benchmarks._transport_runs --bytes 6000 --rounds 300`` joins the running
Ray, places one actor on each of the three one-CPU worker hosts and times an all-to-all
exchange of fixed ``--bytes`` messages three ways, with no compute and no codec (what
is left is the transport alone), rounds submitted ``DEPTH`` ahead as ``fit`` does:

- ``relay``: each call returns its message to the driver, which hands the refs to the
  next round's calls (Ray inlines values under 100 KiB into the reply and into the
  calls: the engine's default all-to-all route);
- ``pull``: each worker ``ray.put``s its message (the worker owns it) and returns the
  ref; the peers ``ray.get`` it from the sender's object store (``route="p2p"``);
- ``push``: each worker sends its message to its peers itself, as the argument of an
  actor call on each peer (worker to worker, over Ray's direct actor-call channel; the
  driver sees only the small per-round reply);
- ``push-loop`` (opt-in): push, with each call running ``LOOP`` rounds, so the driver
  takes no part in a round (what a fit would gain by leaving the workers to loop on
  their own): at 100 mbit and 1 gbit 2.7-3.0 ms a round against the relay's 1.5-2.4
  and push's 3.6-4.3 (4.4 kB messages): the worker-to-worker calls, not the driver's,
  make push dearer than the relay on fast links;
- ``compiled`` (opt-in, ``--transports compiled``): a Ray Compiled Graph of the same
  exchange (each actor writes its message to a channel its peers read; the driver
  writes ``t`` and reads the stats), one round at a time: with rounds in flight the
  cross-node channels of Ray 2.60 time out and the worker hosts' raylets abort (a
  failed check in ``experimental_mutable_object_provider.cc``), which takes the
  cluster's nodes down, so it is not part of ``benchmarks.transports``.

One JSON line per transport: median and mean round time and the wall-clock window of
the timed rounds (for the link counters, :mod:`benchmarks._links`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import ray

MARK = "TRANSPORT_RESULT "
DEPTH = 4           # rounds in flight, as the engine's PIPELINE_DEPTH
WARMUP = 20
LOOP = 16           # rounds a push-loop call runs


@ray.remote(num_cpus=1)
class Relay:
    def __init__(self, message: bytes) -> None:
        self.message = message

    def advance(self, t: int, *received: bytes) -> bytes:
        assert all(len(m) == len(self.message) for m in received)
        return self.message


@ray.remote(num_cpus=1)
class Pull:
    def __init__(self, message: bytes) -> None:
        self.message = message

    def advance(self, t: int, *boxed: list) -> list:
        # Each argument is a one-element list holding a peer's ref, so Ray does not
        # resolve it through the driver; fetch them all from their owners at once.
        received = ray.get([box[0] for box in boxed])
        assert all(len(m) == len(self.message) for m in received)
        return [ray.put(self.message)]


@ray.remote(num_cpus=1, concurrency_groups={"inbox": 1})
class Push:
    def __init__(self, message: bytes, k: int) -> None:
        self.message, self.k = message, k
        self.peers: list = []
        self.inbox: dict[int, list[bytes]] = {}
        self.arrived = threading.Condition()

    def connect(self, handles: list) -> None:
        self.peers = [h for j, h in enumerate(handles) if j != self.k]

    @ray.method(concurrency_group="inbox")
    def deliver(self, t: int, message: bytes) -> None:
        with self.arrived:
            self.inbox.setdefault(t, []).append(message)
            self.arrived.notify_all()

    def advance(self, t: int) -> int:
        if t > 0:
            with self.arrived:
                self.arrived.wait_for(lambda: len(self.inbox.get(t - 1, ())) == len(self.peers))
                received = self.inbox.pop(t - 1)
            assert all(len(m) == len(self.message) for m in received)
        for peer in self.peers:
            peer.deliver.remote(t, self.message)
        return t

    def advance_many(self, t0: int, n: int) -> int:
        for t in range(t0, t0 + n):
            self.advance(t)
        return t0 + n - 1


@ray.remote(num_cpus=1)
class Compiled:
    def __init__(self, message: bytes) -> None:
        self.message = message

    def compute(self, t: int) -> bytes:
        return self.message

    def absorb(self, t: int, *messages: bytes) -> bytes:
        assert all(len(m) == len(self.message) for m in messages)
        return bytes(48)                     # the engine's packed stats


def _time_rounds(submit, rounds: int, depth: int = DEPTH) -> dict:
    """Submit rounds ``depth`` ahead with ``submit(t, previous_refs)``; wait for each."""
    pending: dict[int, list] = {}
    ends: list[float] = []
    previous = None
    for t in range(rounds + WARMUP + depth):
        if t < rounds + WARMUP:
            previous = pending[t] = submit(t, previous)
        if t - depth + 1 >= 0 and t - depth + 1 < rounds + WARMUP:
            done = t - depth + 1
            ray.get(pending.pop(done))
            ends.append(time.time())
    times = [b - a for a, b in zip(ends[WARMUP - 1:], ends[WARMUP:])]
    return {"round_ms": 1e3 * statistics.median(times),
            "round_mean_ms": 1e3 * statistics.fmean(times),
            "window": [ends[WARMUP - 1], ends[-1]], "window_rounds": len(times)}


def run(transport: str, message: bytes, workers: int, rounds: int) -> dict:
    """Time ``rounds`` all-to-all rounds of ``transport`` among ``workers`` actors."""
    if transport == "compiled":
        return _run_compiled(message, workers, rounds)
    if transport in ("relay", "pull"):
        actor_class = Relay if transport == "relay" else Pull
        actors = [actor_class.remote(message) for _ in range(workers)]

        def submit(t, previous):    # each call takes the others' refs of round t - 1
            return [a.advance.remote(t, *([] if previous is None else
                                          [r for j, r in enumerate(previous) if j != k]))
                    for k, a in enumerate(actors)]
    else:
        actors = [Push.remote(message, k) for k in range(workers)]
        ray.get([a.connect.remote(actors) for a in actors])
        if transport == "push-loop":        # one call runs LOOP rounds
            def submit(t, previous):
                return [a.advance_many.remote(LOOP * t, LOOP) for a in actors]
        else:
            def submit(t, previous):
                return [a.advance.remote(t) for a in actors]
    per_call = LOOP if transport == "push-loop" else 1
    timed = _time_rounds(submit, max(rounds // per_call, 8))
    for key in ("round_ms", "round_mean_ms"):
        timed[key] /= per_call
    timed["window_rounds"] *= per_call
    out = {**_where(transport, message, actors), **timed}
    for a in actors:
        ray.kill(a)
    return out


def _where(transport: str, message: bytes, actors: list) -> dict:
    nodes = ray.get([a.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id())
                     for a in actors])
    return {"transport": transport, "bytes": len(message), "workers": len(actors),
            "nodes": len(set(nodes))}


def _run_compiled(message: bytes, workers: int, rounds: int) -> dict:
    from ray.dag import InputNode, MultiOutputNode
    actors = [Compiled.remote(message) for _ in range(workers)]
    out = _where("compiled", message, actors)
    with InputNode() as t:
        messages = [a.compute.bind(t) for a in actors]
        graph = MultiOutputNode([a.absorb.bind(t, *messages) for a in actors])
    compiled = graph.experimental_compile(_max_inflight_executions=1)
    try:
        out.update(_time_rounds(lambda t, _: compiled.execute(t), rounds, depth=1))
    except ray.exceptions.RayError as error:      # a channel timeout: report, not crash
        out["error"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    finally:
        compiled.teardown()
        for a in actors:
            ray.kill(a)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--transports", default="relay,pull,push")
    parser.add_argument("--address", default="auto")
    args = parser.parse_args(argv)
    ray.init(address=args.address)
    message = bytes(range(256)) * (args.bytes // 256) + bytes(args.bytes % 256)
    for transport in args.transports.split(","):
        print(MARK + json.dumps(run(transport, message, args.workers, args.rounds)),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
