"""Autoscaling for real: `ray up` starts the head alone, a fit's pending actors make
Ray's autoscaler start worker hosts over SSH, and idle hosts are released after it.

Run by ``make test-cluster`` (root). The cluster is ``emulate.sh up --autoscale``: the
head advertises no CPU (as in ``cluster/aws.yaml``), the K other hosts one CPU each and
are the local provider's pool (``min_workers: 0``, ``idle_timeout_minutes: 1``). A fit
with K one-CPU workers (``cpus_per_worker=1``) can only run once K hosts have joined.
"""

from __future__ import annotations

import threading
import time

import pytest
from cluster_support import assert_is_the_reference, running

pytestmark = pytest.mark.cluster

K = 3
IDLE_MINUTES = 1
# Ray's v1 autoscaler looks every 5 s; a node idle for IDLE_MINUTES is drained then.
SCALE_DOWN_WAIT_S = IDLE_MINUTES * 60 + 120


@pytest.fixture(scope="module")
def cluster():
    with running(nodes=K + 1, cpus_per_node=1, head_cpus=0, autoscale=True,
                 idle_minutes=IDLE_MINUTES) as c:
        yield c


class _NodeCounter(threading.Thread):
    """Polls the number of alive Ray nodes every ``every`` seconds until stopped."""

    def __init__(self, cluster, every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.cluster, self.every = cluster, every
        self.counts: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self._stop_event.is_set():
            self.counts.append((time.monotonic() - start, self.cluster.alive_nodes()))
            self._stop_event.wait(self.every)

    def stop(self) -> list[tuple[float, int]]:
        self._stop_event.set()
        self.join(timeout=60)
        return self.counts


def test_a_fit_scales_the_cluster_up_and_idle_hosts_are_released(cluster):
    info = cluster.info
    assert info["autoscale"] is True and info["idle_timeout_minutes"] == IDLE_MINUTES
    assert cluster.alive_nodes() == 1                         # ray up started the head only
    problem = {"d": 200, "n": 1600, "seed": 3}
    run = dict(workers=K, codec="qsgd", codec_options={"levels": 4}, mode="all-to-all",
               iterations=60, tol=0.0, seed=1)
    counter = _NodeCounter(cluster)
    counter.start()
    started = time.monotonic()
    try:
        out = cluster.fit(problem, cpus_per_worker=1, timeout=600, **run)
    finally:
        counts = counter.stop()
    fit_s = time.monotonic() - started
    hosts = sorted(p["host"] for p in out["placement"])
    assert hosts == [f"rr-node{i}" for i in range(1, K + 1)], hosts   # one per new host
    assert out["driver"]["nodes_alive"] == K + 1, out["driver"]
    assert max(n for _, n in counts) == K + 1, counts
    assert_is_the_reference(out["history"], problem, **run)

    # Released: with no work left every worker host is drained after the idle timeout.
    deadline = time.monotonic() + SCALE_DOWN_WAIT_S
    idle_started = time.monotonic()
    while (alive := cluster.alive_nodes()) > 1:
        assert time.monotonic() < deadline, (
            f"{alive} nodes still alive {SCALE_DOWN_WAIT_S} s after the fit "
            f"(idle_timeout_minutes {IDLE_MINUTES})")
        time.sleep(5)
    down_s = time.monotonic() - idle_started
    print(f"\nautoscaling: nodes {counts[0][1]} -> {K + 1} during the fit ({fit_s:.0f} s as a"
          f" job, hosts joining included) -> 1 again {down_s:.0f} s after it "
          f"(idle_timeout_minutes {IDLE_MINUTES})")
