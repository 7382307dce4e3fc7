"""``fit``: the one entry point that composes workers, coordinator, history, checkpoints."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import numpy as np

from . import checkpoint as ckpt_io
from . import runtime
from ._validation import check_choice, check_int
from .coordinator import AllToAllCoordinator, MasterCoordinator, RoundRecord
from .result import FitResult, history_table
from .settings import RunConfig, RunSettings, accepts_run_options, resolve, run_config

ROUTES = ("relay", "p2p")


@accepts_run_options
def fit(problem: Any, config: RunConfig | None = None, /, *, progress: bool = True,
        checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 100,
        resume: str | os.PathLike | None = None, placement: str = "pack",
        cpus_per_worker: float | None = None, route: str = "relay",
        address: str | None = None,
        on_round: Callable[[RoundRecord, list], None] | None = None,
        **options: Any) -> FitResult:
    """Fit a model with distributed (quantized) SGD on Ray actors.

    Parameters
    ----------
    problem : the data: a planted problem (``PlantedReLU``, ``Planted(model, ...)``),
        ``ParquetData`` or a path to Parquet data.
    config : a :class:`~ray_relu.settings.RunConfig`; the algorithm's parameters
        (``model``, ``codec``, ``codec_options``, ``workers``, ``mode``, ``batch_size``,
        ``step_size``, ``iterations``, ``tol``, ``init``, ``seed``,
        ``downlink_codec``) may also be given as keywords, which override it. They are
        documented once, on :class:`~ray_relu.settings.RunConfig`.
    progress : show a progress bar (only when stderr is a terminal or in Jupyter).
    checkpoint : path of a checkpoint written every ``checkpoint_every`` rounds and at
        the end (atomically).
    resume : path of a checkpoint to continue from; it must come from a run with the
        same data, model, codec, mode, workers, batch size, step, init and seed.
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
    address : Ray address used when Ray is not initialized yet (None: start a local
        Ray; ``"auto"``: join the running cluster).
    on_round : called after every round with the round's record and the list of
        worker actor handles (monitoring, custom logging, fault-injection tests).

    Returns
    -------
    FitResult
    """
    settings = resolve(problem, run_config(config, **options))
    placement = check_choice("placement", placement, runtime.PLACEMENTS)
    route = check_choice("route", route, ROUTES)
    if route == "p2p" and settings.mode != "all-to-all":
        raise ValueError("route='p2p' applies to mode='all-to-all' only (in master mode "
                         f"the driver aggregates every gradient); got mode={settings.mode!r}")
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    state = None
    if resume is not None:
        state = ckpt_io.load(resume)
        ckpt_io.check_matches(state, settings.fingerprint(), resume)
        if settings.should_stop(state.history.to_pylist()[-1], state.iteration):
            return _result(settings, state.w, state.iteration, state.converged,
                           state.replica_divergence, state.history, state.restarts)
    runtime.ensure_ray(address)
    K = settings.workers
    actors = runtime.spawn_workers(
        settings.source, K, settings.plan, num_cpus=runtime.worker_cpus(K, cpus_per_worker),
        placement=placement, peer_to_peer=settings.mode == "all-to-all" and route == "p2p")
    try:
        return _run(settings, actors, state, progress, checkpoint, checkpoint_every,
                    on_round)
    finally:
        runtime.stop_workers(actors)


def _run(settings: RunSettings, actors: list, state: ckpt_io.Checkpoint | None,
         progress: bool, checkpoint: Any, checkpoint_every: int,
         on_round: Callable | None) -> FitResult:
    if settings.mode == "master":
        coord = MasterCoordinator(actors, settings.plan, settings.step_size,
                                  settings.w_star)
    else:
        coord = AllToAllCoordinator(actors, settings.plan, settings.step_size,
                                    settings.w_star, last_round=settings.iterations)
    if state is None:
        rows = [coord.start(0, settings.start_point())]
        t = 0
    else:
        t = state.iteration
        rows = state.history.to_pylist()
        coord.restarts = state.restarts
        coord.resume(t, state.w, {"next_w": state.next_w, "next_bytes": state.next_bytes})
    bar = _progress_bar(progress, settings.iterations, t)
    try:
        while True:
            last = rows[-1]
            if settings.should_stop(last, t):
                break
            t += 1
            rows.append(coord.next_round(t))
            if on_round is not None:
                on_round(rows[-1], actors)
            if bar is not None:
                bar.update(1)
                # refresh=False: the bar redraws on its own clock; forcing a redraw
                # every round would cost ~50 us, some 5 % of a small round.
                bar.set_postfix({settings.stopping_rule:
                                 f"{getattr(rows[-1], settings.stopping_rule):.3g}"},
                                refresh=False)
            if checkpoint is not None and t % checkpoint_every == 0:
                _save(checkpoint, settings, coord, t, rows, False, None)
    finally:
        if bar is not None:
            bar.close()
    converged = settings.met_tol(rows[-1])
    w = coord.current_w()
    divergence = coord.replica_divergence()
    if checkpoint is not None:
        _save(checkpoint, settings, coord, t, rows, converged, divergence)
    return _result(settings, w, t, converged, divergence, history_table(rows), coord.restarts)


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
    return FitResult(w=np.asarray(w), w_star=settings.w_star, converged=converged,
                     iterations=int(t), replica_divergence=float(divergence),
                     history=history, stopping_rule=settings.stopping_rule,
                     step_size=settings.step_size, restarts=int(restarts), config=config)


def _codec_label(settings: RunSettings) -> str:
    cfg = settings.codec.get_config()
    extras = ",".join(f"{k}={v}" for k, v in cfg.items() if k != "id" and v is not None)
    return f"{cfg['id']}({extras}) {settings.mode} K={settings.workers}" if extras \
        else f"{cfg['id']} {settings.mode} K={settings.workers}"

