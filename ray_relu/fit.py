"""``fit``: the one entry point that composes workers, coordinator, history, checkpoints."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import numpy as np
import ray

from . import checkpoint as ckpt_io
from .client_auth import check_client_auth
from ._validation import check_choice, check_int
from .coordinator import AllToAllCoordinator, MasterCoordinator, RoundRecord
from .result import FitResult, history_table
from .settings import RunSettings, resolve, start_point
from .worker import spawn_workers

PLACEMENTS = ("pack", "spread")
ROUTES = ("relay", "p2p")


def fit(problem: Any, *, codec: Any = "fp32", codec_options: dict | None = None,
        workers: int = 4, mode: str = "master", batch_size: int | None = None,
        step_size: float | None = None, iterations: int = 1000, tol: float = 1e-8,
        init: Any = "moment", seed: int = 0, progress: bool = True,
        checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 100,
        resume: str | os.PathLike | None = None, downlink_codec: Any = None,
        placement: str = "pack", cpus_per_worker: float | None = None,
        route: str = "relay", address: str | None = None,
        on_round: Callable[[RoundRecord, list], None] | None = None) -> FitResult:
    """Fit the ReLU unit with distributed (quantized) SGD on Ray actors.

    Parameters
    ----------
    problem : PlantedReLU, ParquetData, or a path to Parquet data.
    codec : ``"fp64"``, ``"fp32"``, ``"fp16"``, ``"qsgd"``, a config dict or a Codec; how
        workers encode their gradients. ``codec_options`` are passed to
        :func:`ray_relu.codecs.get_codec` (e.g. ``{"levels": 4}``).
    workers : number K of shard actors (1 <= K <= n).
    mode : ``"master"`` (the driver aggregates) or ``"all-to-all"`` (workers exchange
        gradients and each steps its own replica).
    batch_size : rows per iteration over all workers (split evenly); None: full batch.
    step_size : None for the derived default (:func:`ray_relu.model.default_step_size`,
        accounting for batch size, d, K and the codec's variance), or a float > 0.
    iterations : the maximum number of updates.
    tol : stop when ``||w - w*|| / ||w*|| <= tol`` (``w*`` known, e.g. PlantedReLU), or
        else when ``||w_t - w_{t-1}|| / ||w_{t-1}|| <= tol``. ``FitResult.stopping_rule``
        says which; ``converged`` is True only if it fired.
    init : ``"moment"`` (default), ``"zero"``, ``"random"`` or an array of shape (d,).
    seed : the seed of every random choice of the run (batches, quantization, init).
    progress : show a progress bar (only when stderr is a terminal).
    checkpoint : path of a checkpoint written every ``checkpoint_every`` rounds and at
        the end (atomically).
    resume : path of a checkpoint to continue from; it must come from a run with the
        same data, codec, mode, workers, batch size, step, init and seed.
    downlink_codec : master mode only: encode the master's update with this codec
        instead of shipping ``w`` in full precision.
    placement : ``"pack"`` (Ray's default) or ``"spread"`` (one worker per node
        where possible).
    cpus_per_worker : CPUs each actor reserves; None: ``min(1, cluster CPUs / K)``.
        Set it to 1 on an autoscaling cluster so K > nodes asks for more nodes.
    route : how all-to-all gradient messages under 100 KiB travel. ``"relay"``
        (default): Ray inlines them into the calls through the driver. ``"p2p"``: they
        stay in the sending worker's object store and peers pull them from there, so
        no gradient byte crosses the driver's link. Measured on an emulated 3-host
        cluster with messages of 6-10 kB (``benchmarks/routes.py``), Ray's per-object
        transfer cost makes p2p no faster than the relay (slower at 10 mbit), so p2p
        pays only where the driver's link is the bottleneck (many workers). Messages
        over 100 KiB go worker to worker either way. Master mode always relays: the
        driver is the aggregator.
    address : Ray address used when Ray is not initialized yet (None: ``RAY_ADDRESS``
        or else start a local Ray; ``"auto"``: join the running cluster;
        ``"ray://HEAD:10001"``: Ray Client). A Ray Client cluster with token auth needs
        ``RAY_AUTH_MODE=token`` and its token (``RAY_AUTH_TOKEN_PATH``); without them
        :class:`ray_relu.client_auth.ClusterAuthError` says so at once.
    on_round : called after every round with the round's record and the list of
        worker actor handles (monitoring, custom logging, fault-injection tests).

    Returns
    -------
    FitResult
    """
    settings = resolve(problem, codec=codec, codec_options=codec_options, workers=workers,
                       mode=mode, batch_size=batch_size, step_size=step_size,
                       iterations=iterations, tol=tol, init=init, seed=seed,
                       downlink_codec=downlink_codec)
    placement = check_choice("placement", placement, PLACEMENTS)
    route = check_choice("route", route, ROUTES)
    if route == "p2p" and settings.mode != "all-to-all":
        raise ValueError("route='p2p' applies to mode='all-to-all' only (in master mode "
                         f"the driver aggregates every gradient); got mode={settings.mode!r}")
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    state = None
    if resume is not None:
        state = ckpt_io.load(resume)
        ckpt_io.check_matches(state, settings.fingerprint(), resume)
        if _should_stop(settings, state.history.to_pylist()[-1], state.iteration):
            return _result(settings, state.w, state.iteration, state.converged,
                           state.replica_divergence, state.history, state.restarts)
    _ensure_ray(address)
    K = settings.workers
    cpus = cpus_per_worker if cpus_per_worker is not None else \
        min(1.0, ray.cluster_resources().get("CPU", 1.0) / K)
    peer_to_peer = settings.mode == "all-to-all" and route == "p2p"
    actors = spawn_workers(settings.source, K, settings.plan, num_cpus=cpus,
                           spread=placement == "spread", peer_to_peer=peer_to_peer)
    try:
        return _run(settings, actors, state, progress, checkpoint, checkpoint_every,
                    on_round)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)


def _ensure_ray(address: str | None) -> None:
    if not ray.is_initialized():
        # A ray:// cluster that wants a token we do not send: one line now, not Ray
        # Client's 30 s timeout that blames the port.
        check_client_auth(address)
        ray.init(address=address, include_dashboard=False if address is None else None,
                 configure_logging=False, log_to_driver=True)


def _should_stop(settings: RunSettings, row: Any, t: int) -> bool:
    return bool(_value(row, settings) <= settings.tol) or t >= settings.iterations


def _run(settings: RunSettings, actors: list, state: ckpt_io.Checkpoint | None,
         progress: bool, checkpoint: Any, checkpoint_every: int,
         on_round: Callable | None) -> FitResult:
    if settings.mode == "master":
        coord = MasterCoordinator(actors, settings.plan, settings.step_size,
                                  settings.source.w_star)
    else:
        coord = AllToAllCoordinator(actors, settings.plan, settings.step_size,
                                    settings.source.w_star, last_round=settings.iterations)
    if state is None:
        rows = [coord.start(0, start_point(settings))]
        t = 0
    else:
        t = state.iteration
        rows = state.history.to_pylist()
        coord.restarts = state.restarts
        if settings.mode == "master":
            coord.resume(state.w, state.next_w, state.next_bytes)
        else:
            coord.resume(t, state.w)
    bar = _progress_bar(progress, settings.iterations, t)
    try:
        while True:
            last = rows[-1]
            if _should_stop(settings, last, t):
                break
            t += 1
            rows.append(coord.next_round(t))
            if on_round is not None:
                on_round(rows[-1], actors)
            if bar is not None:
                bar.update(1)
                # refresh=False: the bar redraws on its own clock; forcing a redraw
                # every round would cost ~50 us, some 5 % of a small round.
                bar.set_postfix({settings.stopping_rule: f"{_value(rows[-1], settings):.3g}"},
                                refresh=False)
            if checkpoint is not None and t % checkpoint_every == 0:
                _save(checkpoint, settings, coord, t, rows, False, None)
    finally:
        if bar is not None:
            bar.close()
    converged = _value(rows[-1], settings) <= settings.tol
    w = coord.current_w()
    divergence = coord.replica_divergence()
    if checkpoint is not None:
        _save(checkpoint, settings, coord, t, rows, converged, divergence)
    return _result(settings, w, t, converged, divergence, history_table(rows), coord.restarts)


def _value(row: Any, settings: RunSettings) -> float:
    """The stopping rule's quantity of a history row (a dict) or a RoundRecord."""
    return row[settings.stopping_rule] if isinstance(row, dict) \
        else getattr(row, settings.stopping_rule)


def _save(path, settings, coord, t, rows, converged, divergence) -> None:
    extra = coord.continuation()
    ckpt_io.save(path, ckpt_io.Checkpoint(
        iteration=t, w=coord.current_w(), history=history_table(rows),
        fingerprint=settings.fingerprint(), converged=bool(converged),
        next_w=extra.get("next_w"), next_bytes=extra.get("next_bytes", 0),
        replica_divergence=divergence or 0.0, restarts=coord.restarts))


def _progress_bar(progress: bool, total: int, initial: int):
    # A terminal gets a text bar, a Jupyter kernel a widget; logs and pipes get nothing.
    in_notebook = "ipykernel" in sys.modules
    if not progress or not (sys.stderr.isatty() or in_notebook):
        return None
    from tqdm import tqdm
    if in_notebook:
        try:  # the widget needs ipywidgets; without it the text bar works in a notebook too
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm
        except ImportError:
            pass
    return tqdm(total=total, initial=initial, desc="ray_relu fit", unit="it",
                leave=False, file=sys.stderr)


def _result(settings: RunSettings, w, t, converged, divergence, history,
            restarts) -> FitResult:
    config = settings.fingerprint()
    config["codec_label"] = _codec_label(settings)
    return FitResult(w=np.asarray(w), w_star=settings.source.w_star, converged=converged,
                     iterations=int(t), replica_divergence=float(divergence),
                     history=history, stopping_rule=settings.stopping_rule,
                     step_size=settings.step_size, restarts=int(restarts), config=config)


def _codec_label(settings: RunSettings) -> str:
    cfg = settings.codec.get_config()
    extras = ",".join(f"{k}={v}" for k, v in cfg.items() if k != "id" and v is not None)
    return f"{cfg['id']}({extras}) {settings.mode} K={settings.workers}" if extras \
        else f"{cfg['id']} {settings.mode} K={settings.workers}"

