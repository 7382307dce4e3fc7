"""Coordinator overhead: ``fit``'s time per iteration on a trivial shard, next to the
plainest Ray loops that move the same bytes between the same number of actors.

With d = 8 and 4 rows per worker the arithmetic is a few microseconds, so what is
left is the engine's per-round machinery: task submission, object transfer, the stats
round trip, aggregation and bookkeeping. Three candidates per (K, mode), K = 1, 2, 4:

- **fit**: ``ray_relu.fit(codec="fp32", tol=0, progress=False)``. Per-iteration time
  excludes setup (actor start, shard build, start round, final replica fetch): the
  driver clock is read in fit's ``on_round`` callback, which runs after every round;
  the time from one callback's return to the next one's entry is one iteration,
  everything between two rounds included, and we average the rounds after ``W``
  warm-up rounds (``benchmarks/_fit_timing.py``).
- **bare**: a fan-out/fan-in loop written here with plain actors whose method returns
  a precomputed message of the fit's real size (fp32 gradient, 29-byte header
  included). *master*: ship ``w`` (its fp64 message size), K calls, one ``ray.get``
  of all K, numpy decode + average + step. ``w`` travels the way ``fit`` ships it:
  inline in the call below Ray's 100 KiB inline limit, one ``ray.put`` above;
  **bare_put** is the same loop with ``ray.put(w)`` every round regardless, the
  textbook parameter-server loop. *all-to-all*: each actor gets the K message refs
  of the previous round as call arguments (Ray resolves them before the call, the
  way ``fit`` passes them; a refs list fetched with ``ray.get`` inside the actor is
  slower, so the reference is the stricter one), decodes them in order and steps
  its replica; the driver waits for the K new messages.
- **shaped**: the bare loop with fit's call shape: the same round-tuple first
  argument and a second return of a packed 48-byte ``RoundStats``, the K stats (and,
  master, the K messages) fetched with one ``ray.get``. fit - shaped is what the
  engine's own Python costs per round (worker: decode, gradient, encode, stats;
  driver: decode, average, step, history row); shaped - bare is Ray's price for the
  second return object per worker.
- **compiled**: the same actors in a Ray Compiled Graph (``ray.dag.InputNode`` /
  ``MultiOutputNode``, ``experimental_compile()``). master: ``execute(w)`` -> K
  messages; all-to-all: one ``execute`` runs gradient -> exchange -> apply on every
  actor (the driver receives K small acks). Compiled afresh for each repeat and torn
  down right after it (compile time excluded): idle compiled-graph actors keep
  polling their channels and would otherwise steal CPU from the other candidates.

Interleaving: bare, shaped and bare_put run inside fit's ``on_round`` callback, one
iteration each between two rounds of the fit (timed apart from the fit's rounds), so
they alternate round by round and share the machine's noise. The compiled graph
cannot join that dance (its actors poll while it exists), so it runs as a block after
each fit; fit/compiled is therefore noisier. Each time is the mean over the rounds
after warm-up; the table shows medians over repeats, and ratios are medians of the
per-repeat (paired) ratios.

The ``cpu_*`` columns are the driver thread's CPU time per iteration
(``time.thread_time``) for fit, shaped and bare. Wall time on a shared 2-core machine
swings with other jobs; CPU time hardly does, so these columns show the driver-side
share of fit's overhead even on a crowded machine.

All-to-all ``fit`` submits rounds ahead, and so does master where every round relays
the gradient messages (here K = 1, 2, 4: the codec's ``max_message_bytes`` proves that
K - 1 fp32 messages per worker are fewer bytes than ``w`` in fp64), so a loop run
inside its callback would overlap its rounds: there bare, shaped, **bare_ahead** (the
all-to-all bare loop submitting rounds ahead as fit does, the like-for-like and
stricter reference) and compiled run as blocks after each fit, and fit/bare is against
bare_ahead (fit/bare_sync against the synchronous loop, master's textbook loop).

Goal (issue 11): ``fit / bare <= 1.2`` in both modes.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from typing import Any, Callable

import numpy as np
import ray
from ray.dag import InputNode, MultiOutputNode

from benchmarks._common import parse_args, print_table, write_json
from benchmarks._fit_timing import load_average, start_ray, time_fit

D = 8
ROWS_PER_WORKER = 4
GOAL = 1.2
INLINE_BYTES = 100 * 1024       # Ray's default max_direct_call_object_size


class EchoWorker:
    """A stand-in shard worker: returns a fixed gradient message, decodes peers'."""

    def __init__(self, message_bytes: int, header: int, d: int) -> None:
        from ray_relu.worker import RoundStats
        body = np.full(d, 0.5, dtype=np.float32).tobytes()
        self.message = bytes(message_bytes - len(body)) + body
        self.stats = RoundStats(0.0, 0.0, 0.0, 0.0, 0.0, 0).pack()
        self.header = header
        self.w = np.zeros(d)

    def gradient(self, *inputs: Any) -> bytes:
        """This round's message (the inputs, ``w`` or nothing, are already resolved)."""
        return self.message

    def exchange(self, *peers: bytes) -> bytes:
        """Decode the K peer messages in order, step the replica, return a message."""
        if peers:
            g = np.mean([np.frombuffer(p, np.float32, offset=self.header) for p in peers],
                        axis=0)
            self.w = self.w - 0.1 * g
        return self.message

    def apply(self, *peers: bytes) -> int:
        """Compiled all-to-all: apply the round's K messages, return a tiny ack."""
        self.exchange(*peers)
        return 0

    @ray.method(num_returns=2)
    def shaped(self, round_: tuple, *inputs: bytes) -> tuple[bytes, bytes]:
        """``gradient``/``exchange`` with the call shape of ``ShardWorker.advance``:
        a round tuple argument first, a second return with the packed stats."""
        message = self.exchange(*inputs) if round_[1] == "peers" else self.message
        return message, self.stats


def _message_sizes(d: int) -> tuple[int, int, int]:
    """(fp32 gradient message, fp64 ``w`` message, header) sizes, from the real codecs."""
    from ray_relu.codecs import FullPrecision, get_codec
    from ray_relu.codecs.base import HEADER_SIZE
    g = np.ones(d)
    return (len(get_codec("fp32").encode(g)), len(FullPrecision("float64").encode(g)),
            HEADER_SIZE)


class BareLoops:
    """Plain-Ray and compiled-graph loops over K echo actors (one set per loop kind)."""

    def __init__(self, K: int, mode: str, d: int = D) -> None:
        self.K, self.mode, self.d = K, mode, d
        self.up, self.down, self.header = _message_sizes(d)
        actor = ray.remote(EchoWorker).options(num_cpus=0)
        self.actors = [actor.remote(self.up, self.header, d) for _ in range(K)]
        self.graph_actors = [actor.remote(self.up, self.header, d) for _ in range(K)]
        ray.get([a.gradient.remote() for a in self.actors + self.graph_actors])
        self.w = np.zeros(d)
        self.previous: list = []
        self.previous_shaped: list = []
        self.graph = None

    def _compile(self):
        with InputNode() as inp:
            grads = [a.gradient.bind(inp) for a in self.graph_actors]
            if self.mode == "all-to-all":
                grads = [a.apply.bind(*grads) for a in self.graph_actors]
            dag = MultiOutputNode(grads)
        return dag.experimental_compile()

    def _w_message(self) -> bytes:
        return bytes(self.down - 8 * self.d) + self.w.tobytes()

    def _step(self, messages: list[bytes]) -> None:
        g = np.mean([np.frombuffer(m, np.float32, offset=self.header) for m in messages],
                    axis=0)
        self.w = self.w - 0.1 * g

    def bare(self, put: bool = False) -> None:
        """One iteration of the plain fan-out/fan-in loop."""
        if self.mode == "master":
            message = self._w_message()
            arg = ray.put(message) if put or len(message) >= INLINE_BYTES else message
            self._step(ray.get([a.gradient.remote(arg) for a in self.actors]))
        else:
            refs = [a.exchange.remote(*self.previous) for a in self.actors]
            ray.get(refs)
            self.previous = refs

    def shaped(self) -> None:
        """:meth:`bare` with fit's call shape (see ``EchoWorker.shaped``): the driver
        gets the K stats (and, master, the K messages) with one ``ray.get``."""
        if self.mode == "master":
            pending = [a.shaped.remote((0, "set", 0.1), self._w_message())
                       for a in self.actors]
            values = ray.get([s for _, s in pending] + [m for m, _ in pending])
            self._step(values[self.K:])
        else:
            pending = [a.shaped.remote((0, "peers", 0.1), *self.previous_shaped)
                       for a in self.actors]
            ray.get([s for _, s in pending])
            self.previous_shaped = [m for m, _ in pending]

    def bare_ahead_seconds(self, iterations: int, warmup: int) -> float:
        """All-to-all bare loop submitting ``PIPELINE_DEPTH`` rounds ahead, as ``fit``
        does: each round's calls take the previous round's refs, Ray orders the calls
        per actor, and the driver waits only for the oldest round in flight."""
        from ray_relu.coordinator import PIPELINE_DEPTH
        in_flight: deque = deque()
        previous: list = []
        done, start = 0, time.perf_counter()
        for i in range(iterations + PIPELINE_DEPTH - 1):
            if i < iterations:
                previous = [a.exchange.remote(*previous) for a in self.actors]
                in_flight.append(previous)
            if len(in_flight) == PIPELINE_DEPTH or i >= iterations:
                ray.get(in_flight.popleft())
                done += 1
                if done == warmup:
                    start = time.perf_counter()
        return (time.perf_counter() - start) / (iterations - warmup)

    def compiled(self) -> None:
        """One iteration through the compiled graph (see :meth:`compiled_seconds`)."""
        if self.mode == "master":
            self._step(ray.get(self.graph.execute(self._w_message())))
        else:
            ray.get(self.graph.execute(0))

    def compiled_seconds(self, iterations: int, warmup: int) -> float:
        """Compile, time :meth:`compiled`, tear down. A compiled graph's actors poll
        their channels (~20-30 % of a core each, measured), so the graph must not
        outlive its own measurement or it would slow the other candidates down."""
        self.graph = self._compile()
        try:
            return _loop_seconds(self.compiled, iterations, warmup)
        finally:
            self.graph.teardown()
            self.graph = None

    def close(self) -> None:
        for a in self.actors + self.graph_actors:
            ray.kill(a)


def _loop_seconds(step: Callable[[], None], iterations: int, warmup: int) -> float:
    """Mean seconds per call of ``step`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iterations - warmup):
        step()
    return (time.perf_counter() - start) / (iterations - warmup)


def rounds_ahead(problem: Any, K: int, mode: str) -> bool:
    """Whether ``fit`` submits rounds ahead here: always in all-to-all, and in master
    where the codec's message bound proves every round relays the gradients."""
    if mode == "all-to-all":
        return True
    from ray_relu.coordinator import MasterCoordinator
    from ray_relu.settings import resolve
    settings = resolve(problem, codec="fp32", workers=K, mode=mode)
    return MasterCoordinator([None] * K, settings.plan, settings.step_size,
                             settings.w_star, last_round=2).pipelined


def measure(K: int, mode: str, *, iterations: int, warmup: int,
            repeats: int) -> dict[str, list[float]]:
    """Seconds per iteration of every candidate, one steady-state mean per repeat."""
    from ray_relu import PlantedReLU

    problem = PlantedReLU(d=D, n=K * ROWS_PER_WORKER, seed=0)
    loops = BareLoops(K, mode)
    between: dict[str, Callable[[], None]] = {"bare": loops.bare, "shaped": loops.shaped}
    if mode == "master":
        between["bare_put"] = lambda: loops.bare(put=True)
    # Where fit's rounds run ahead of the driver (all-to-all; master where every round
    # relays), a loop run inside its callback would overlap them, so there the others
    # run as blocks after each fit.
    blocks: dict[str, Callable[[], float]] = {
        "compiled": lambda: loops.compiled_seconds(iterations, warmup)}
    if rounds_ahead(problem, K, mode):
        blocks["bare_ahead"] = lambda: loops.bare_ahead_seconds(iterations, warmup)
        blocks["bare"] = lambda: _loop_seconds(loops.bare, iterations, warmup)
        blocks["shaped"] = lambda: _loop_seconds(loops.shaped, iterations, warmup)
        between = {}
    names = ("fit", *between, *blocks, "fit_cpu", *(f"{n}_cpu" for n in between))
    samples: dict[str, list[float]] = {name: [] for name in names}
    try:
        for _ in range(repeats):
            timing = time_fit(problem, codec="fp32", workers=K, mode=mode,
                              iterations=iterations, warmup=warmup, between=between)
            timing["fit"], timing["fit_cpu"] = (timing["per_iteration_s"],
                                                timing["per_iteration_cpu_s"])
            for name in samples:
                if name not in blocks:
                    samples[name].append(timing[name])
            for name, seconds in blocks.items():
                samples[name].append(seconds())
    finally:
        loops.close()
    return samples


def summarize(mode: str, K: int, samples: dict[str, list[float]]) -> dict[str, Any]:
    """One table row: median times, and medians of the per-repeat (paired) ratios."""
    def ms(name: str) -> Any:
        return 1e3 * statistics.median(samples[name]) if name in samples else "-"

    def ratio(name: str, fit: str = "fit") -> float:
        return statistics.median(f / o for f, o in zip(samples[fit], samples[name]))

    def us(name: str) -> Any:
        return 1e6 * statistics.median(samples[name]) if name in samples else "-"

    # The like-for-like loop: synchronous for master, rounds ahead for all-to-all.
    like = "bare_ahead" if "bare_ahead" in samples else "bare"
    return {"mode": mode, "K": K, "fit_ms": ms("fit"), "bare_ms": ms("bare"),
            "bare_ahead_ms": ms("bare_ahead"), "shaped_ms": ms("shaped"),
            "bare_put_ms": ms("bare_put"), "compiled_ms": ms("compiled"),
            "fit/bare": ratio(like), "fit/bare_sync": ratio("bare"),
            "fit/shaped": ratio("shaped"), "fit/compiled": ratio("compiled"),
            "goal_met": ratio(like) <= GOAL, "cpu_fit_us": us("fit_cpu"),
            "cpu_shaped_us": us("shaped_cpu"), "cpu_bare_us": us("bare_cpu")}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)
    iterations, warmup, repeats = (150, 20, 3) if args.quick else (600, 50, 7)
    load_before = load_average()
    start_ray()
    rows, raw = [], {}
    try:
        for mode in ("master", "all-to-all"):
            for K in (1, 2, 4):
                samples = measure(K, mode, iterations=iterations, warmup=warmup,
                                  repeats=repeats)
                raw[f"{mode} K={K}"] = samples
                rows.append(summarize(mode, K, samples))
                print_table(rows[-1:], f"{mode} K={K}")
    finally:
        ray.shutdown()
    print_table(rows, f"time per iteration, d={D}, {ROWS_PER_WORKER} rows/worker "
                      f"(goal fit/bare <= {GOAL})")
    payload = {"d": D, "rows_per_worker": ROWS_PER_WORKER, "iterations": iterations,
               "warmup": warmup, "repeats": repeats, "goal_fit_over_bare": GOAL,
               "load_average": {"before": load_before, "after": load_average()},
               "rows": rows, "samples_s": raw}
    write_json("coordinator_overhead", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
