"""Running a fit as an operator would: stalls and round timeouts, memory that does not
fit, progress lines in logs, Ray metrics on the dashboard's endpoint.

A stalled worker is a live actor process stopped with SIGSTOP: alive to Ray, silent to
the driver, what a blocked link looks like from the driver's side (the emulated
cluster's test blocks a real link: tests/test_cluster_emulated.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request

import numpy as np
import pytest
import ray

from ray_relu import PlantedReLU, fit, runtime
from ray_relu.coordinator import RoundTimeoutError

pytestmark = pytest.mark.usefixtures("ray_session")
DETERMINISTIC = ("iteration", "loss", "rel_error", "rel_change", "bytes_up", "bytes_down",
                 "bytes_peer")


def _same_history(a, b) -> None:
    for name in DETERMINISTIC:
        np.testing.assert_array_equal(a.history.column(name).to_numpy(),
                                      b.history.column(name).to_numpy(), err_msg=name)


def _stall(worker_index: int, at_round: int, seconds: float | None, stopped: list):
    """``on_round``: SIGSTOP worker ``worker_index`` after round ``at_round``; SIGCONT it
    ``seconds`` later (None: leave it to the test)."""
    def on_round(record, workers):
        if record.iteration == at_round:
            pid = ray.get(workers[worker_index].info.remote())["pid"]
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
            if seconds is not None:
                threading.Timer(seconds, os.kill, (pid, signal.SIGCONT)).start()
    return on_round


COMMON = dict(codec="qsgd", codec_options={"levels": 4}, workers=3, batch_size=30,
              iterations=30, tol=0, seed=5, progress=False)


@pytest.mark.parametrize("mode", ["master", "all-to-all"])
def test_a_short_stall_only_delays_the_fit(mode):
    problem = PlantedReLU(d=20, n=300, seed=2)
    calm = fit(problem, mode=mode, **COMMON)
    stopped: list = []
    begin = time.perf_counter()
    stalled = fit(problem, mode=mode, round_timeout=30,
                  on_round=_stall(1, 5, 2.0, stopped), **COMMON)
    assert stopped and time.perf_counter() - begin >= 2.0
    _same_history(calm, stalled)
    np.testing.assert_array_equal(calm.w, stalled.w)


@pytest.mark.parametrize("mode", ["master", "all-to-all"])
def test_a_long_stall_stops_with_the_worker_round_and_checkpoint_then_resumes(mode,
                                                                              tmp_path):
    problem = PlantedReLU(d=20, n=300, seed=2)
    calm = fit(problem, mode=mode, **COMMON)
    ckpt = tmp_path / "ckpt.npz"
    stopped: list = []
    with pytest.raises(RoundTimeoutError) as info:
        fit(problem, mode=mode, round_timeout=5, checkpoint=ckpt, checkpoint_every=1000,
            on_round=_stall(2, 7, None, stopped), **COMMON)
    for pid in stopped:
        os.kill(pid, signal.SIGCONT)   # the actor was killed with the fit; be tidy anyway
    message = str(info.value)
    assert info.value.workers == [2] and "worker 2" in message
    assert f"(worker 2 on node {ray.util.get_node_ip_address()})" in message
    assert f"round {info.value.round}:" in message and "round_timeout=5 s" in message
    assert f"written to {ckpt}" in message and ckpt.is_file()
    resumed = fit(problem, mode=mode, resume=ckpt, **COMMON)
    _same_history(calm, resumed)
    np.testing.assert_array_equal(calm.w, resumed.w)


def test_round_timeout_is_validated():
    with pytest.raises(ValueError, match="round_timeout must be > 0"):
        fit(PlantedReLU(d=3, n=30), round_timeout=0, progress=False)


def test_a_shard_too_big_fails_before_any_actor_starts(monkeypatch):
    def no_actors(*args, **kwargs):
        raise AssertionError("actors were started")

    monkeypatch.setattr(runtime, "spawn_workers", no_actors)
    with pytest.raises(runtime.ShardTooLargeError) as info:
        fit(PlantedReLU(d=100_000, n=10_000_000), workers=2, progress=False)
    message = str(info.value)
    largest = max(n["Resources"]["memory"] for n in ray.nodes() if n["Alive"])
    assert f"{largest / 2**30:.2f} GiB" in message and "d=100000" in message
    need = runtime.shard_bytes(10_000_000, 100_000, 2, 100_000)
    assert f"{need / 2**30:.2f} GiB per worker" in message
    advised = int(message.split("use workers >= ")[1].split(",")[0])
    assert runtime.shard_bytes(10_000_000, 100_000, advised, 100_000) <= largest
    assert runtime.shard_bytes(10_000_000, 100_000, advised - 1, 100_000) > largest
    # float32 rows: half the bytes a value, so about half the workers.
    with pytest.raises(runtime.ShardTooLargeError) as info:
        fit(PlantedReLU(d=100_000, n=10_000_000, dtype="float32"), workers=2,
            progress=False)
    assert "rows x (4 d + 8) bytes" in str(info.value)
    single = int(str(info.value).split("use workers >= ")[1].split(",")[0])
    assert runtime.shard_bytes(10_000_000, 100_000, single, 100_000, 4) <= largest
    assert runtime.shard_bytes(10_000_000, 100_000, single - 1, 100_000, 4) > largest
    assert single < 0.6 * advised


def test_logs_get_plain_progress_lines_not_a_bar(capsys):
    import ipykernel  # noqa: F401  (imported, as after the notebook tests, but no kernel runs)
    fit(PlantedReLU(d=10, n=100, seed=1), workers=2, iterations=15, tol=0, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "ray_relu fit: finished at round 15/15, rel_error " in err


def test_per_round_metrics_reach_rays_metrics_endpoint():
    """Scrapes the node's Prometheus endpoint (loopback) until the fit's gauges show."""
    result = fit(PlantedReLU(d=10, n=100, seed=1), workers=2, iterations=20, tol=0,
                 progress=False, name="metrics-probe", mode="all-to-all")
    port = ray._private.worker.global_worker.node.metrics_export_port
    wanted = {"ray_ray_relu_round": 20.0,
              "ray_ray_relu_rel_error": result.history.column("rel_error")[-1].as_py()}
    total_peer = sum(result.history.column("bytes_peer").to_pylist()[1:])
    seen: dict = {}
    deadline = time.monotonic() + 60
    # The exporter publishes on its own period: an early scrape may show a mid-fit round.
    while time.monotonic() < deadline and (
            seen.get("ray_ray_relu_round") != wanted["ray_ray_relu_round"]
            or seen.get("peer") != total_peer):
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        for line in body.decode().splitlines():
            if 'fit="metrics-probe"' not in line or line.startswith("#"):
                continue
            name = line.split("{")[0]
            if name in wanted:
                seen[name] = float(line.rsplit(" ", 1)[1])
            if name.startswith("ray_ray_relu_bytes") and 'direction="peer"' in line:
                seen["peer"] = float(line.rsplit(" ", 1)[1])
        time.sleep(1)
    assert seen.get("ray_ray_relu_round") == wanted["ray_ray_relu_round"]
    assert seen.get("ray_ray_relu_rel_error") == pytest.approx(
        wanted["ray_ray_relu_rel_error"], rel=1e-9)
    assert seen.get("peer") == total_peer
