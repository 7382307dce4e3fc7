"""Bytes that crossed each emulated link during a time window inside a job.

A job's driver runs on the head and cannot see the links from outside, and counters
read before and after a job include everything around the timed rounds (actor start,
shard generation, process-group setup). So :class:`LinkSampler` reads
:meth:`ray_relu.emulated.EmulatedCluster.link_bytes` in a background thread every
``interval`` seconds with the wall clock (``time.time()``), and the job reports the
wall-clock window of its timed rounds; the hosts share this machine's clock, so
:meth:`LinkSampler.between` interpolates the counters at the window's two ends.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
import time
from typing import Any


class LinkSampler:
    """Samples the cluster's link counters while it is open (a context manager)."""

    def __init__(self, cluster: Any, interval: float = 0.02) -> None:
        self.cluster, self.interval = cluster, interval
        self.times: list[float] = []
        self.samples: list[dict[str, tuple[int, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        counters = self.cluster.link_bytes()
        self.times.append(time.time())
        self.samples.append(counters)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "LinkSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _at(self, t: float) -> dict[str, tuple[float, float]]:
        """Counters at wall time ``t``, linear between the two samples around it."""
        i = min(max(bisect.bisect_left(self.times, t), 1), len(self.times) - 1)
        t0, t1 = self.times[i - 1], self.times[i]
        a = 0.0 if t1 == t0 else min(1.0, max(0.0, (t - t0) / (t1 - t0)))
        s0, s1 = self.samples[i - 1], self.samples[i]
        return {host: tuple(x0 + a * (x1 - x0) for x0, x1 in zip(s0[host], s1[host]))
                for host in s0}

    def between(self, start: float, stop: float) -> dict[str, dict[str, float]]:
        """Per host: ``{"in": bytes, "out": bytes}`` that crossed its link in the window."""
        a, b = self._at(start), self._at(stop)
        return {host: {"in": b[host][0] - a[host][0], "out": b[host][1] - a[host][1]}
                for host in a}


def link_kB(sampler: LinkSampler, run: dict) -> dict[str, float]:
    """kB per round on the head's link and on the mean worker's, in and out, over the
    timed window a driver reported (``run["window"]``, ``run["window_rounds"]``)."""
    from benchmarks.peers import per_round_bytes
    start, stop = run["window"]
    b = per_round_bytes(sampler.between(start, stop), run["window_rounds"])
    return {"head_in_kB": b["head_in"] / 1e3, "head_out_kB": b["head_out"] / 1e3,
            "wkr_in_kB": b["worker_in"] / 1e3, "wkr_out_kB": b["worker_out"] / 1e3}


@contextlib.contextmanager
def sampled_cluster(rate: str):
    """The benchmarks' emulated cluster (CPU-less head, one-CPU worker hosts, id
    ``RAY_RELU_EMU_ID``, default 7) shaped to ``rate``, its links sampled throughout:
    yields ``(cluster, sampler)``."""
    from benchmarks.cluster_time_to_accuracy import BENCH_CLUSTER_ID, DELAY, WORKERS
    from ray_relu.emulated import EmulatedCluster
    cluster_id = int(os.environ.get("RAY_RELU_EMU_ID", BENCH_CLUSTER_ID))
    with EmulatedCluster(nodes=WORKERS + 1, rate=rate, delay=DELAY, cpus_per_node=1,
                         head_cpus=0, cluster_id=cluster_id) as cluster:
        with LinkSampler(cluster) as sampler:
            yield cluster, sampler
