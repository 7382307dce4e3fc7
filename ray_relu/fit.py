"""``fit``: the one entry point that composes workers, coordinator, history, checkpoints."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import checkpoint as ckpt_io
from . import runtime
from ._validation import check_choice, check_float, check_int
from .coordinator import AllToAllCoordinator, MasterCoordinator, RoundRecord, RoundTimeoutError
from .monitoring import FitMetrics, progress_reporter
from .result import FitResult, history_table
from .settings import RunConfig, RunSettings, accepts_run_options, resolve, run_config

DEFAULT_ROUND_TIMEOUT_S = 600.0
_FIT_NUMBERS = itertools.count(1)


@dataclass
class _Watch:
    """How a fit is watched and kept: the engine options that are not the algorithm."""

    progress: bool
    checkpoint: Any
    checkpoint_every: int
    round_timeout: float | None
    metrics: bool
    name: str
    on_round: Callable | None


@accepts_run_options
def fit(problem: Any, config: RunConfig | None = None, /, *, progress: bool = True,
        checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 100,
        resume: str | os.PathLike | None = None, placement: str = "pack",
        cpus_per_worker: float | None = None, route: str = "relay",
        address: str | None = None, round_timeout: float | None = DEFAULT_ROUND_TIMEOUT_S,
        metrics: bool = True, name: str | None = None, memory_check: bool = True,
        on_round: Callable[[RoundRecord, list], None] | None = None,
        **options: Any) -> FitResult:
    """Fit a model with distributed (quantized) SGD on Ray actors.

    Parameters
    ----------
    problem : the data: a planted problem (``PlantedReLU``, ``Planted(model, ...)``),
        numpy arrays ``(X, y)``, a pandas DataFrame, a path or URI of Parquet data, a
        ``ray.data.Dataset``, or a :class:`~ray_relu.data.DataSource`
        (:func:`ray_relu.data.as_source`; ``docs/data.md``).
    config : a :class:`~ray_relu.settings.RunConfig`; the algorithm's parameters
        (``model``, ``codec``, ``codec_options``, ``workers``, ``mode``, ``batch_size``,
        ``step_size``, ``iterations``, ``tol``, ``init``, ``seed``,
        ``downlink_codec``) may also be given as keywords, which override it. They are
        documented once, on :class:`~ray_relu.settings.RunConfig`.
    progress : show a progress bar (only when stderr is a terminal or in Jupyter).
    checkpoint : path or URI (``file://``, ``s3://``, what ``pyarrow.fs`` resolves) of a
        checkpoint written every ``checkpoint_every`` rounds and at the end (atomically
        on local disks; one upload on object stores). A URI outlives the head node.
    resume : path or URI of a checkpoint to continue from; it must come from a run with the
        same data, model, codec, mode, workers, batch size, step, init and seed.
    placement : ``"pack"`` (Ray's default) or ``"spread"`` (one worker per node
        where possible).
    cpus_per_worker : CPUs each actor reserves; None: ``min(1, cluster CPUs / K)``.
        Set it to 1 on an autoscaling cluster so K > nodes asks for more nodes.
    route : how all-to-all gradient messages travel. ``"relay"`` (default): Ray inlines
        those under 100 KiB into the calls through the driver. ``"p2p"``: they stay in
        the sending worker's object store and the peers pull them from there.
        ``"push"``: each worker sends its message to every peer itself, as the argument
        of an actor call on the peer (:mod:`ray_relu.push_worker`). With p2p and push
        no gradient byte crosses the driver's link. Measured on an emulated 3-host
        cluster (``benchmarks/transports.py``, ``benchmarks/routes.py``): push is the
        fastest where the driver's link is the bottleneck (slow links, large messages,
        many workers) and costs each worker K - 1 calls a round elsewhere; p2p pays
        Ray's object pull (over 20 ms a round) at every rate. Messages over 100 KiB
        go worker to worker in every route. Master mode always relays: the driver is
        the aggregator. Every route gives the same history, bit for bit.
    address : Ray address used when Ray is not initialized yet (None: ``RAY_ADDRESS``
        or else start a local Ray; ``"auto"``: join the running cluster;
        ``"ray://HEAD:10001"``: Ray Client). A Ray Client cluster with token auth needs
        ``RAY_AUTH_MODE=token`` and its token (``RAY_AUTH_TOKEN_PATH``); without them
        :class:`ray_relu.client_auth.ClusterAuthError` says so at once.
    round_timeout : seconds a round may wait for its workers (default 600; None: for
        ever). A worker that died is restarted and its round replayed; one that is
        alive but silent (a stalled link or node) for longer stops the fit with a
        :class:`~ray_relu.coordinator.RoundTimeoutError` naming the workers, their
        nodes and the round, after writing ``checkpoint`` from what the driver holds (master: the
        last round; all-to-all: its latest snapshot of ``w``), so ``resume`` continues
        exactly. A shorter stall just delays the round: the history is unchanged.
    metrics : export per-round metrics through ``ray.util.metrics`` (the dashboard,
        Prometheus); see :mod:`ray_relu.monitoring`.
    name : the fit's name in those metrics (default ``fit-<pid>-<n>``).
    memory_check : before starting any actor, check that the largest shard fits in the
        largest node's memory (:func:`ray_relu.runtime.check_memory`); a failure says
        how much is needed and how many workers would fit.
    on_round : called after every round with the round's record and the list of
        worker actor handles (monitoring, custom logging, fault-injection tests).

    Returns
    -------
    FitResult
    """
    settings = resolve(problem, run_config(config, **options))
    placement = check_choice("placement", placement, runtime.PLACEMENTS)
    route = check_choice("route", route, runtime.ROUTES)
    if route != "relay" and settings.mode != "all-to-all":
        raise ValueError(f"route={route!r} applies to mode='all-to-all' only (in master mode "
                         f"the driver aggregates every gradient); got mode={settings.mode!r}")
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    if round_timeout is not None:
        round_timeout = check_float("round_timeout", round_timeout, strictly_positive=True)
    watch = _Watch(progress=progress, checkpoint=checkpoint,
                   checkpoint_every=checkpoint_every, round_timeout=round_timeout,
                   metrics=bool(metrics), name=name or f"fit-{os.getpid()}-{next(_FIT_NUMBERS)}",
                   on_round=on_round)
    state = None
    if resume is not None:
        state = ckpt_io.load(resume)
        ckpt_io.check_matches(state, settings.fingerprint(), resume)
        if settings.should_stop(state.history.to_pylist()[-1], state.iteration):
            return _result(settings, state.w, state.iteration, state.converged,
                           state.replica_divergence, state.history, state.restarts)
    runtime.ensure_ray(address)
    K = settings.workers
    if memory_check:
        runtime.check_memory(settings.source, settings.plan, K)
    actors = runtime.spawn_workers(
        settings.source, K, settings.plan, num_cpus=runtime.worker_cpus(K, cpus_per_worker),
        placement=placement, route=route)
    try:
        return _run(settings, actors, state, watch, route)
    finally:
        runtime.stop_workers(actors)


def _run(settings: RunSettings, actors: list, state: ckpt_io.Checkpoint | None,
         watch: "_Watch", route: str = "relay") -> FitResult:
    common = dict(round_timeout=watch.round_timeout, last_round=settings.iterations)
    if settings.mode == "master":
        coord = MasterCoordinator(actors, settings.plan, settings.step_size,
                                  settings.w_star, **common)
    else:
        coord = AllToAllCoordinator(actors, settings.plan, settings.step_size,
                                    settings.w_star, push=route == "push", **common)
    if state is None:
        rows = [coord.start(0, settings.start_point())]
        t = 0
    else:
        t = state.iteration
        rows = state.history.to_pylist()
        coord.restarts = state.restarts
        coord.resume(t, state.w, {"next_w": state.next_w, "next_bytes": state.next_bytes,
                                  "data_init": settings.data_init,
                                  "residuals": state.residuals,
                                  "downlink_residual": state.downlink_residual})
    progress = progress_reporter(watch.progress, settings.iterations, t,
                                 settings.stopping_rule)
    metrics = FitMetrics(watch.name, settings.mode) if watch.metrics else None
    try:
        while True:
            last = rows[-1]
            if settings.should_stop(last, t):
                break
            t += 1
            rows.append(coord.next_round(t))
            if watch.on_round is not None:
                watch.on_round(rows[-1], actors)
            if progress is not None:
                progress.update(t, getattr(rows[-1], settings.stopping_rule))
            if metrics is not None:
                metrics.record(rows[-1])
            if watch.checkpoint is not None and t % watch.checkpoint_every == 0:
                _save(watch.checkpoint, settings, (t, coord.current_w(), coord.continuation()),
                      rows, False, None, coord.restarts)
        converged = settings.met_tol(rows[-1])
        w = coord.current_w()
        divergence = coord.replica_divergence()
    except RoundTimeoutError as exc:
        raise _timed_out(exc, settings, coord, rows, watch.checkpoint) from None
    finally:
        if progress is not None:
            progress.close()
        if metrics is not None:
            metrics.close()
    if watch.checkpoint is not None:
        _save(watch.checkpoint, settings, (t, w, coord.continuation()), rows, converged,
              divergence, coord.restarts)
    return _result(settings, w, t, converged, divergence, history_table(rows), coord.restarts)


def _timed_out(exc: RoundTimeoutError, settings: RunSettings, coord: Any, rows: list,
               checkpoint: Any) -> RoundTimeoutError:
    """The error to raise after a round timed out: the silent workers' nodes, and the
    checkpoint written from what the driver holds (it cannot ask the workers) and
    where."""
    where = " (no checkpoint: none was asked for)"
    if checkpoint is not None:
        state = coord.driver_state()
        if state is None:
            where = " (no checkpoint written: the driver holds no exact w yet)"
        else:
            _save(checkpoint, settings, state, rows, False, None, coord.restarts)
            where = f"; checkpoint of round {state[0]} written to {checkpoint}"
    nodes = runtime.worker_nodes(coord.workers, exc.workers)
    if nodes:
        where = " (" + ", ".join(f"worker {k} on node {ip}" for k, ip in nodes.items()) \
            + ")" + where
    error = RoundTimeoutError(exc.round, exc.workers, exc.timeout)
    error.args = (str(exc) + where,)
    return error


def _save(path, settings, state, rows, converged, divergence, restarts) -> None:
    """Checkpoint round ``t`` of ``state = (t, w_t, continuation)`` with rows ``0..t``."""
    t, w, extra = state
    ckpt_io.save(path, ckpt_io.Checkpoint(
        iteration=t, w=w, history=history_table(rows[:t + 1]),
        fingerprint=settings.fingerprint(), converged=bool(converged),
        next_w=extra.get("next_w"), next_bytes=extra.get("next_bytes", 0),
        replica_divergence=divergence or 0.0, restarts=restarts,
        residuals=extra.get("residuals"), downlink_residual=extra.get("downlink_residual")))


def _result(settings: RunSettings, w, t, converged, divergence, history,
            restarts) -> FitResult:
    config = settings.fingerprint()
    config["codec_label"] = _codec_label(settings)
    return FitResult(w=np.asarray(w), w_star=settings.w_star, converged=converged,
                     iterations=int(t), replica_divergence=float(divergence),
                     history=history, stopping_rule=settings.stopping_rule,
                     step_size=settings.step_size, restarts=int(restarts), config=config)


def _codec_label(settings: RunSettings) -> str:
    cfg = settings.codec.get_config()
    extras = ",".join(f"{k}={v}" for k, v in cfg.items() if k != "id" and v is not None)
    return f"{cfg['id']}({extras}) {settings.mode} K={settings.workers}" if extras \
        else f"{cfg['id']} {settings.mode} K={settings.workers}"

