"""A run's parameters (:class:`RunConfig`), validated once, and what a run derives.

:class:`RunConfig` is the one list of the algorithm's parameters: :func:`ray_relu.fit`,
:func:`ray_relu.reference.sgd`, the experiments and the CLI all build one.
:func:`resolve` checks it against the data (scikit-learn style: every message names
the argument, what was received and what is allowed) and derives the batch split,
the aggregation weights, the step size and the stopping rule.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ._validation import check_choice, check_float, check_int
from .codecs import Codec, get_codec
from .data import DataSource, as_source
from .models import Model, get_model
from .shards import shard_bounds, split_evenly

MODES = ("master", "all-to-all")
STOPPING_RULES = ("rel_error", "rel_change")


@dataclass(frozen=True)
class RunConfig:
    """What to fit and how: every parameter of the algorithm (not the data, not where
    it runs).

    Parameters
    ----------
    model : a :class:`~ray_relu.models.Model`, a model name (``"relu"``, ``"linear"``,
        ``"leaky"``, ``"logistic"``, ``"hidden"``) or None: the planted problem's model,
        else the paper's ReLU.
    codec : a codec name (:func:`ray_relu.codecs.available_codecs`), a config dict or
        a :class:`~ray_relu.codecs.Codec` instance (any subclass, registered or not: the
        object itself is sent to the workers); how workers encode their gradients.
        ``codec_options`` are passed to :func:`ray_relu.codecs.get_codec`.
    workers : number K of shard actors (1 <= K <= n).
    mode : ``"master"`` (the driver aggregates) or ``"all-to-all"`` (workers exchange
        gradients and each steps its own replica).
    batch_size : rows per iteration over all workers (split evenly); None: full batch.
    step_size : None for the model's untuned default (accounting for batch size, d, K
        and the codec's variance), or a float > 0.
    iterations : the maximum number of updates.
    tol : stop when ``||w - w*|| / ||w*|| <= tol`` (``w*`` known, e.g. a planted
        problem of the same model), else when ``||w_t - w_{t-1}|| / ||w_{t-1}|| <= tol``.
    init : the model's initialization: a name (None: the model's default; the ReLU's
        is ``"moment"``) or an array of shape ``(model.num_params(d),)``.
    seed : the seed of every random choice of the run (batches, quantization, init).
    downlink_codec : master mode only: encode the master's update with this codec
        instead of shipping ``w`` exactly.
    """

    model: Any = None
    codec: Any = "fp32"
    codec_options: dict | None = None
    workers: int = 4
    mode: str = "master"
    batch_size: int | None = None
    step_size: float | None = None
    iterations: int = 1000
    tol: float = 1e-8
    init: Any = None
    seed: int = 0
    downlink_codec: Any = None

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with ``changes``; an unknown name raises a ValueError listing the
        known ones."""
        return dataclasses.replace(self, **check_options(changes))


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` if every key is a :class:`RunConfig` field, else a ValueError."""
    known = [f.name for f in dataclasses.fields(RunConfig)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))}; the "
                         f"algorithm's parameters are {', '.join(known)}")
    return options


def run_config(config: RunConfig | None = None, /, **options: Any) -> RunConfig:
    """``config`` (default :class:`RunConfig`) with ``options`` applied."""
    if config is not None and not isinstance(config, RunConfig):
        raise ValueError(f"config must be a RunConfig, got {type(config).__name__}")
    return (config or RunConfig()).replace(**options)


def accepts_run_options(func: Callable) -> Callable:
    """Give ``func(..., **options)`` a signature listing :class:`RunConfig`'s fields
    (what ``help()``, IDEs and Jupyter show) in place of ``**options``."""
    sig = inspect.signature(func)
    params = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
    params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
               for f in dataclasses.fields(RunConfig)]
    func.__signature__ = sig.replace(parameters=params)
    return func


@dataclass(frozen=True)
class WorkerPlan:
    """What every worker of a run needs to know besides its own shard."""

    seed: int
    model: Model
    init: Any                  # the init's name, or None when w_0 is given to workers
    d: int                     # input features
    codec: Codec               # uplink / peer codec
    downlink: Codec | None     # codec of the master's updates, when they are encoded
    batch_rows: tuple          # rows per worker per iteration (None: its whole shard)
    weights: tuple             # aggregation weight of each worker
    n: int                     # rows in the whole data set
    measure_error: bool        # whether the data's w* is this model's optimum


@dataclass(frozen=True)
class RunSettings:
    """A validated run: everything :func:`ray_relu.fit` and the reference use."""

    source: DataSource
    config: RunConfig
    model: Model
    workers: int
    mode: str
    codec: Codec
    downlink: Codec | None
    step_size: float
    init: Any
    w_star: np.ndarray | None
    plan: WorkerPlan

    @property
    def iterations(self) -> int:
        return self.config.iterations

    @property
    def tol(self) -> float:
        return self.config.tol

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def batch_size(self) -> int | None:
        return self.config.batch_size

    @property
    def stopping_rule(self) -> str:
        """``"rel_error"`` when ``w*`` is known, else ``"rel_change"``."""
        return STOPPING_RULES[0] if self.w_star is not None else STOPPING_RULES[1]

    def should_stop(self, row: Any, t: int) -> bool:
        """The one stopping rule: ``tol`` met by the rule's quantity in ``row`` (a
        history row dict or a record), or ``t`` reached ``iterations``."""
        return self.met_tol(row) or t >= self.iterations

    def met_tol(self, row: Any) -> bool:
        """Whether the stopping rule's quantity of ``row`` is ``<= tol``."""
        value = row[self.stopping_rule] if isinstance(row, dict) \
            else getattr(row, self.stopping_rule)
        return bool(value <= self.tol)

    def fingerprint(self) -> dict:
        """What a checkpoint must agree on to be resumed by this run."""
        init = self.init if isinstance(self.init, str) else "array"
        return {"data": self.source.spec(), "model": self.model.get_config(),
                "codec": self.codec.get_config(),
                "downlink": self.downlink.get_config() if self.downlink else None,
                "workers": self.workers, "mode": self.mode, "batch_size": self.batch_size,
                "step_size": self.step_size, "init": init, "seed": self.seed}

    @property
    def data_init(self) -> bool:
        """Whether ``w_0`` is computed from the shards (a model's data init)."""
        return isinstance(self.init, str) and self.init in self.model.data_inits

    def start_point(self) -> np.ndarray | None:
        """``w_0`` when it needs no data; None for a data init (computed on the shards)."""
        if self.data_init:
            return None
        return self.model.initial_point(self.init, self.source.d, seed=self.seed)


def resolve(problem: Any, config: RunConfig | None = None, /,
            **options: Any) -> RunSettings:
    """Check ``config`` (with ``options`` applied) against the data; derive the rest."""
    cfg = run_config(config, **options)
    source = as_source(problem)
    model = get_model(cfg.model if cfg.model is not None else getattr(source, "model", None))
    K = check_int("workers", cfg.workers, minimum=1, maximum=source.n)
    mode = check_choice("mode", cfg.mode, MODES)
    codec = get_codec(cfg.codec, **(cfg.codec_options or {}))
    downlink = None
    if cfg.downlink_codec is not None:
        if mode != "master":
            raise ValueError("downlink_codec applies to mode='master' only; "
                             f"got mode={mode!r}")
        downlink = get_codec(cfg.downlink_codec)
    batch_rows, weights, effective = _split_batches(cfg.batch_size, source.n, K)
    if cfg.step_size is None:
        step = model.default_step_size(
            effective, source.d, workers=K,
            variance_factor=_variance(codec, model.num_params(source.d)),
            downlink_variance=_variance(downlink, model.num_params(source.d))
            if downlink else 0.0)
    else:
        step = check_float("step_size", cfg.step_size, strictly_positive=True)
    seed = check_int("seed", cfg.seed, minimum=0)
    check_int("iterations", cfg.iterations, minimum=0)
    check_float("tol", cfg.tol, minimum=0.0)
    init = model.check_init(cfg.init, source.d)
    w_star = _optimum(source, model)
    plan = WorkerPlan(seed=seed, model=model,
                      init=init if isinstance(init, str) else None, d=source.d,
                      codec=codec, downlink=downlink, batch_rows=batch_rows,
                      weights=weights, n=source.n, measure_error=w_star is not None)
    return RunSettings(source=source, config=cfg, model=model, workers=K, mode=mode,
                       codec=codec, downlink=downlink, step_size=step, init=init,
                       w_star=w_star, plan=plan)


def _split_batches(batch_size: int | None, n: int, K: int) -> tuple[tuple, tuple, int]:
    """Rows per worker per iteration, aggregation weights, and the effective batch."""
    shard_rows = [b - a for a, b in (shard_bounds(n, k, K) for k in range(K))]
    if batch_size is None:
        return (None,) * K, tuple(r / n for r in shard_rows), n
    m = check_int("batch_size", batch_size, minimum=K, maximum=n)
    batch_rows = tuple(split_evenly(m, K))
    for k, (mk, nk) in enumerate(zip(batch_rows, shard_rows)):
        if mk > nk:
            raise ValueError(f"batch_size={m} gives worker {k} {mk} rows per step but "
                             f"its shard has {nk}; use batch_size <= "
                             f"{K * min(shard_rows)} or fewer workers")
    return batch_rows, tuple(mk / m for mk in batch_rows), m


# A codec whose variance_bound is None (the default of Codec) is assumed to err by as
# much as the gradient itself (q = 1): the default step then about halves. Pass
# step_size to do better.
UNKNOWN_VARIANCE = 1.0


def _variance(codec: Codec, d: int) -> float:
    """The codec's ``variance_bound(d)``, or :data:`UNKNOWN_VARIANCE` when it has none."""
    q = codec.variance_bound(d)
    if q is None:
        return UNKNOWN_VARIANCE
    return check_float(f"{type(codec).__name__}.variance_bound({d})", q, minimum=0.0)


def _optimum(source: DataSource, model: Model) -> np.ndarray | None:
    """The data's ``w*`` if it is this model's (a planted problem of the same model, or
    a ``w*`` of the right length given with the data); otherwise None."""
    w_star = source.w_star
    if w_star is None:
        return None
    source_model = getattr(source, "model", None)
    if source_model is not None and source_model != model:
        return None
    return w_star if w_star.shape == (model.num_params(source.d),) else None
