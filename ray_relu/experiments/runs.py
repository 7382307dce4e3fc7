"""Running the trajectories experiments are made of: one engine switch, seeds, sweeps.

- :func:`history`: one run's history table, from the Ray engine (:func:`ray_relu.fit`)
  or from the single-process reference (:func:`ray_relu.reference.sgd`). With the
  same arguments both compute the same iterates (``tests/test_engine.py`` checks it to
  round-off for fp64), so an experiment about the *algorithm* may use the reference
  where Ray would only add overhead; experiments about bytes, modes and time use Ray.
- :func:`derived_seed`: independent integer seeds for trials, from one user seed.
- :func:`parallel_map`: independent jobs, as Ray tasks when asked (a cluster runs a
  sweep's grid points side by side) or in this process.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from .._validation import check_choice, check_float, check_int
from ..models import PlantedReLU
from .tables import column

ENGINES = ("ray", "reference")
# The history columns both engines produce (the reference has no bytes or timings).
ALGORITHM_COLUMNS = ("iteration", "loss", "rel_error", "rel_change")
# Where each mode's gradient messages are counted: uplink to the master in master mode
# (its downlink carries w, not gradients), worker-to-worker in all-to-all.
GRADIENT_BYTES = {"master": "bytes_up", "all-to-all": "bytes_peer"}
BYTE_COLUMNS = ("bytes_up", "bytes_down", "bytes_peer")


def planted(d: int, n_over_d: float, *, noise: float = 0.0, seed: int = 0) -> PlantedReLU:
    """The planted problem with ``n = round(n_over_d * d)`` samples (checked)."""
    d = check_int("d", d, minimum=1)
    ratio = check_float("n_over_d", n_over_d, strictly_positive=True)
    return PlantedReLU(d, max(1, int(round(ratio * d))), noise=noise, seed=seed)


def history(problem: Any, *, engine: str = "ray", **options: Any) -> pa.Table:
    """The history of one run of SGD on ``problem`` with ``options`` (``fit``'s names).

    ``engine="ray"`` runs :func:`ray_relu.fit` (progress bar off) and returns its full
    history; ``engine="reference"`` runs :func:`ray_relu.reference.sgd` and returns the
    columns :data:`ALGORITHM_COLUMNS`.
    """
    engine = check_choice("engine", engine, ENGINES)
    if engine == "ray":
        return ray_fit(problem, **options).history
    from ..reference import sgd
    return sgd(problem, **options).history


def ray_fit(problem: Any, **options: Any):
    """:func:`ray_relu.fit` without a progress bar (the experiments print their own)."""
    from ..fit import fit
    return fit(problem, progress=False, **options)


def per_iteration(table: pa.Table, name: str) -> float:
    """Mean of column ``name`` over rounds 1..T (round 0 also carries the moment sums)."""
    values = column(table, name)[1:]
    return float(values.mean()) if values.size else float("nan")


DEFAULT_BATCH = -1   # "a fixed fraction of n", resolved by :func:`batch_rows`


def batch_rows(batch_size: int | None, n: int, divisor: int) -> int | None:
    """Resolve an experiment's ``batch_size``: ``DEFAULT_BATCH`` (-1) means
    ``n // divisor`` (at least 1), None means full batch, anything else is used as
    given (``fit`` validates it)."""
    if batch_size is None:
        return None
    if check_int("batch_size", batch_size, minimum=-1) == DEFAULT_BATCH:
        return max(1, n // check_int("divisor", divisor, minimum=1))
    return int(batch_size)


def derived_seed(seed: int, *key: int) -> int:
    """A 32-bit seed for sub-run ``key`` of an experiment seeded with ``seed``.

    Distinct keys give statistically independent seeds (numpy ``SeedSequence``), so
    trial 1 of seed 0 never reuses the data of trial 0 of seed 1.
    """
    return int(np.random.SeedSequence([seed, *key]).generate_state(1)[0])


def parallel_map(func: Callable[..., Any], jobs: Sequence[tuple], *,
                 parallel: bool = False) -> list:
    """``[func(*job) for job in jobs]``, as one Ray task per job when ``parallel``.

    ``func`` must be importable by Ray workers (a module-level function). Results come
    back in job order either way, and since every job carries its own seeds they do
    not depend on ``parallel``. Ray is started locally if it is not running.
    """
    if not parallel:
        return [func(*job) for job in jobs]
    import ray

    from ..runtime import ensure_ray
    ensure_ray()
    remote = ray.remote(num_cpus=1)(func)
    return ray.get([remote.remote(*job) for job in jobs])
