"""Validate a run's parameters once, up front, and derive what the run needs.

:func:`resolve` is the single place where ``fit``'s and the reference's arguments are
checked (scikit-learn style: every message names the argument, what was received and
what is allowed) and where defaults are derived: batch split, aggregation weights,
the step size, the stopping rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import check_choice, check_float, check_int
from .codecs import Codec, get_codec
from .data import DataSource, as_source
from .model import check_init, default_step_size, shard_bounds, split_evenly

MODES = ("master", "all-to-all")


@dataclass(frozen=True)
class WorkerPlan:
    """What every worker of a run needs to know besides its own shard."""

    seed: int
    codec: dict                # uplink / peer codec config
    downlink: dict | None      # codec of the master's updates, when they are encoded
    batch_rows: tuple          # rows per worker per iteration (None: its whole shard)
    weights: tuple             # aggregation weight of each worker
    n: int                     # rows in the whole data set


@dataclass(frozen=True)
class RunSettings:
    """A validated run: everything :func:`ray_relu.fit` and the reference use."""

    source: DataSource
    workers: int
    mode: str
    codec: Codec
    downlink: Codec | None
    batch_size: int | None
    step_size: float
    iterations: int
    tol: float
    init: Any
    seed: int
    plan: WorkerPlan

    @property
    def stopping_rule(self) -> str:
        """``"rel_error"`` when ``w*`` is known, else ``"rel_change"``."""
        return "rel_error" if self.source.w_star is not None else "rel_change"

    def fingerprint(self) -> dict:
        """What a checkpoint must agree on to be resumed by this run."""
        init = self.init if isinstance(self.init, str) else "array"
        return {"data": self.source.spec(), "codec": self.codec.get_config(),
                "downlink": self.downlink.get_config() if self.downlink else None,
                "workers": self.workers, "mode": self.mode, "batch_size": self.batch_size,
                "step_size": self.step_size, "init": init, "seed": self.seed}


def resolve(problem: Any, *, codec: Any = "fp32", codec_options: dict | None = None,
            workers: int = 4, mode: str = "master", batch_size: int | None = None,
            step_size: float | None = None, iterations: int = 1000, tol: float = 1e-8,
            init: Any = "moment", seed: int = 0,
            downlink_codec: Any = None) -> RunSettings:
    """Check every argument and derive the run's settings (see :func:`ray_relu.fit`)."""
    source = as_source(problem)
    K = check_int("workers", workers, minimum=1, maximum=source.n)
    mode = check_choice("mode", mode, MODES)
    codec = get_codec(codec, **(codec_options or {}))
    downlink = None
    if downlink_codec is not None:
        if mode != "master":
            raise ValueError("downlink_codec applies to mode='master' only; "
                             f"got mode={mode!r}")
        downlink = get_codec(downlink_codec)
    shard_rows = [b - a for a, b in (shard_bounds(source.n, k, K) for k in range(K))]
    if batch_size is None:
        batch_rows = (None,) * K
        weights = tuple(r / source.n for r in shard_rows)
        effective = source.n
    else:
        m = check_int("batch_size", batch_size, minimum=K, maximum=source.n)
        batch_rows = tuple(split_evenly(m, K))
        for k, (mk, nk) in enumerate(zip(batch_rows, shard_rows)):
            if mk > nk:
                raise ValueError(f"batch_size={m} gives worker {k} {mk} rows per step but "
                                 f"its shard has {nk}; use batch_size <= "
                                 f"{K * min(shard_rows)} or fewer workers")
        weights = tuple(mk / m for mk in batch_rows)
        effective = m
    if step_size is None:
        step = default_step_size(
            effective, source.d, workers=K, variance_factor=codec.variance_bound(source.d),
            downlink_variance=downlink.variance_bound(source.d) if downlink else 0.0)
    else:
        step = check_float("step_size", step_size, strictly_positive=True)
    seed = check_int("seed", seed, minimum=0)
    plan = WorkerPlan(seed=seed, codec=codec.get_config(),
                      downlink=downlink.get_config() if downlink else None,
                      batch_rows=batch_rows, weights=weights, n=source.n)
    return RunSettings(
        source=source, workers=K, mode=mode, codec=codec, downlink=downlink,
        batch_size=None if batch_size is None else int(batch_size), step_size=step,
        iterations=check_int("iterations", iterations, minimum=0),
        tol=check_float("tol", tol, minimum=0.0), init=check_init(init, source.d),
        seed=seed, plan=plan)


def start_point(settings: RunSettings) -> np.ndarray | None:
    """``w_0`` for a non-moment initialization; None means "moment" (needs the shards)."""
    from .model import initial_point
    if isinstance(settings.init, str) and settings.init == "moment":
        return None
    return initial_point(settings.init, settings.source.d, seed=settings.seed)
