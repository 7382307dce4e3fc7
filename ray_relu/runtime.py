"""The one owner of the Ray side: start or join Ray, start the shard actors, decide
their CPUs and placement, and stop them.

:func:`ray_relu.fit`, the experiments, the CLI and the benchmarks go through here, so
there is one ``ray.init`` policy and one actor policy for all of them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import ray

from .data import DataSource, worker_sources
from .settings import WorkerPlan
from .push_worker import INBOX, PushingShardWorker
from .worker import KEPT_REPLICAS, ShardWorker

PLACEMENTS = ("pack", "spread")
ROUTES = ("relay", "p2p", "push")

# In peer-to-peer routing a worker's returns above this size go to its node's object
# store instead of into the reply to the driver (Ray's default limit is 100 KiB), so
# peers pull gradient messages from the sender's node and the driver's link carries
# only the 48-byte stats and the refs. Below it a message costs about what a ref does.
P2P_INLINE_BYTES = 256


def ensure_ray(address: str | None = None, *, log_to_driver: bool = True,
               num_cpus: int | None = None) -> None:
    """Connect this process to Ray unless it already is.

    ``address=None`` starts a local Ray (no dashboard: it costs seconds and memory a
    laptop fit does not need); ``"auto"`` joins the cluster this machine belongs to;
    ``"local"`` always starts a private one; ``"ray://host:10001"`` connects through
    Ray Client. ``num_cpus`` applies to a Ray started here.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    from .client_auth import check_client_auth
    # A ray:// cluster that wants a token we do not send: one line now, not Ray
    # Client's 30 s timeout that blames the port.
    check_client_auth(address)
    starts_local = address in (None, "local")
    options: dict[str, Any] = {"configure_logging": False, "log_to_driver": log_to_driver}
    if starts_local:
        options["include_dashboard"] = False
        if num_cpus is not None:
            options["num_cpus"] = num_cpus
    ray.init(address=address, **options)


def worker_cpus(K: int, requested: float | None) -> float:
    """CPUs each of ``K`` actors reserves: ``requested``, or ``min(1, cluster CPUs / K)``
    so that K workers always fit on the cluster as it is (an autoscaling cluster
    grows only for ``requested=1``-style demand beyond its size)."""
    if requested is not None:
        return float(requested)
    return min(1.0, ray.cluster_resources().get("CPU", 1.0) / K)


class ShardTooLargeError(ValueError):
    """A worker's shard cannot fit in any node's memory; raised before actors start."""


def shard_bytes(n: int, d: int, K: int, num_params: int, feature_bytes: int = 8) -> int:
    """Memory one worker needs at most: its shard's rows ``X`` (``feature_bytes`` a
    value: 4 for float32 rows) and ``y`` (float64), its kept replicas of ``w`` and a
    few working vectors (gradient, messages, decodes)."""
    rows = -(-n // K)          # shard sizes differ by at most one (shard_bounds)
    return rows * (feature_bytes * d + 8) + 8 * num_params * (KEPT_REPLICAS + 6)


def feature_bytes(source: DataSource) -> int:
    """Bytes per value of ``source``'s rows: its ``feature_dtype`` (an optional part of
    the data-source contract), float64 when it does not say."""
    return np.dtype(getattr(source, "feature_dtype", np.float64)).itemsize


def check_memory(source: DataSource, plan: WorkerPlan, K: int) -> None:
    """Raise :class:`ShardTooLargeError` if the largest shard cannot fit in the memory
    Ray grants tasks on the largest node (its ``memory`` resource), with the numbers;
    a fit would otherwise start and be killed mid-run by the out-of-memory monitor.

    On an autoscaling cluster only the nodes already up are known: a node type larger
    than all of them is not taken into account (pass ``memory_check=False`` to fit).
    """
    params = plan.model.num_params(source.d)
    width = feature_bytes(source)
    need = shard_bytes(source.n, source.d, K, params, width)
    nodes = [node["Resources"].get("memory", 0.0) for node in ray.nodes() if node["Alive"]]
    largest = max(nodes, default=0.0)
    if largest and need > largest:
        rows_that_fit = int((largest - 8 * params * (KEPT_REPLICAS + 6))
                            // (width * source.d + 8))
        advice = (f"use workers >= {-(-source.n // rows_that_fit)}" if rows_that_fit > 0
                  else "use bigger nodes")
        raise ShardTooLargeError(
            f"a shard of {source.n} rows x d={source.d} split {K} ways needs "
            f"{need / 2**30:.2f} GiB per worker (rows x ({width} d + 8) bytes, plus replicas "
            f"of w), but the largest node grants tasks {largest / 2**30:.2f} GiB; "
            f"{advice}, or pass memory_check=False if larger nodes will join")


def spawn_workers(source: DataSource, K: int, plan: WorkerPlan, *, num_cpus: float,
                  placement: str = "pack", route: str = "relay") -> list:
    """Start ``K`` restartable shard actors; each builds its own shard.

    Actors restart after a crash (``max_restarts=-1``); tasks are not retried by Ray,
    because a restarted worker first needs its replica back, which the coordinator
    sends when it replays the rounds. ``placement="spread"`` asks for one worker per
    node where possible. ``route`` (all-to-all; see :data:`ROUTES`): ``"relay"``
    starts ``ShardWorker`` actors as they are; ``"p2p"`` keeps their gradient messages
    in their own nodes' object stores (see ``P2P_INLINE_BYTES``); ``"push"`` starts
    :class:`~ray_relu.push_worker.PushingShardWorker` actors, which send their
    messages to their peers themselves.
    """
    options: dict[str, Any] = {"num_cpus": num_cpus, "max_restarts": -1,
                               "max_task_retries": 0}
    if placement == "spread":
        options["scheduling_strategy"] = "SPREAD"
    if route == "p2p":
        # Ray reads its config from RAY_* variables when a worker process starts.
        options["runtime_env"] = {"env_vars": {
            "RAY_max_direct_call_object_size": str(P2P_INLINE_BYTES)}}
    actor_class = ray.remote(ShardWorker)
    if route == "push":     # Ray takes concurrency groups at decoration only
        actor_class = ray.remote(concurrency_groups={INBOX: 1})(PushingShardWorker)
    remote_cls = actor_class.options(**options)
    # What an actor receives is small (parameters, a path, or refs to its own rows):
    # each actor, and each restart of it, rebuilds its shard from it.
    shipped = worker_sources(source, K)
    return [remote_cls.remote(shipped[k], k, K, plan) for k in range(K)]


def stop_workers(actors: list) -> None:
    """Kill the actors for good (no restart); their objects go with them."""
    for actor in actors:
        ray.kill(actor, no_restart=True)


def worker_nodes(actors: list, indices: list[int]) -> dict[int, str]:
    """The node IP of each worker in ``indices``, from Ray's actor table in the GCS (the
    driver cannot ask a silent worker itself); workers Ray cannot place are left out."""
    from ray._private.state import actors as actor_table   # the GCS, not the dashboard
    where = {}
    for k in indices:
        try:
            address = actor_table(actors[k]._actor_id.hex()).get("Address") or {}
        except Exception:     # noqa: BLE001 - the message is better without than not at all
            continue
        if address.get("IPAddress"):
            where[k] = address["IPAddress"]
    return where
