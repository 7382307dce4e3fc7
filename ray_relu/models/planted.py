"""Planted problems: rows ``x ~ N(0, I_d)`` labelled by a model at a planted ``w*``.

``Planted(model, d, n, noise, seed)`` generates its rows on demand, block by block,
each block from its own random stream, so the data set depends on
``(model, d, n, noise, seed)`` only: any split into shards concatenates to the same
rows, and a Ray worker builds just its own shard from these few parameters.
``dtype="float32"`` stores the rows in single precision (rounded from the same draws,
labelled from the rounded rows): half the memory, and half the memory traffic of each
gradient, for a slightly different data set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_choice, check_float, check_int
from ..seeding import DATA_NOISE, DATA_X, rng_for
from ..shards import shard_bounds
from .base import Model

# About 2**20 values (8 MiB) per block whatever d is.
_VALUES_PER_BLOCK = 1 << 20
DTYPES = ("float64", "float32")


class Planted:
    """The planted problem ``y = model(w*, x) + noise * z`` with ``x ~ N(0, I_d)``.

    Parameters
    ----------
    model : Model
        Labels rows and defines ``w*`` (:meth:`Model.planted_parameters`).
    d : int
        Input dimension, >= 1.
    n : int
        Number of samples, >= 1.
    noise : float
        Standard deviation of Gaussian label noise, >= 0 (default 0: realizable).
    seed : int
        Seed of everything random in the problem: ``w_star`` and every row.
    dtype : ``"float64"`` (default) or ``"float32"``
        How the rows ``X`` are stored. float32 rows are the float64 draws rounded, and
        the labels (float64 either way) are computed from the rounded rows, so the
        problem stays exactly realizable. The arithmetic is float64 either way.

    Rows are generated where :meth:`rows` or :meth:`shard` is called (on a Ray worker,
    typically), never stored here; pickling keeps the parameters only.
    """

    def __init__(self, model: Model, d: int, n: int, noise: float = 0.0,
                 seed: int = 0, dtype: str = "float64") -> None:
        if not isinstance(model, Model):
            raise ValueError(f"model must be a ray_relu.models.Model, got "
                             f"{type(model).__name__}")
        self.model = model
        self.d = check_int("d", d, minimum=1)
        self.n = check_int("n", n, minimum=1)
        self.noise = check_float("noise", noise, minimum=0.0)
        self.seed = check_int("seed", seed, minimum=0)
        self.dtype = check_choice("dtype", dtype, DTYPES)
        self._w_star = np.asarray(model.planted_parameters(self.d, self.seed),
                                  dtype=np.float64)
        self._w_star.setflags(write=False)
        self.block_rows = max(1, _VALUES_PER_BLOCK // self.d)
        model.check_planted_noise(self.noise)

    def __reduce__(self) -> tuple:
        # Parameters only: w_star is rebuilt from the seed where the problem lands
        # (at d = 1e6 it would ship 8 MB with every actor constructor).
        return (Planted, (self.model, self.d, self.n, self.noise, self.seed, self.dtype))

    def __repr__(self) -> str:
        return (f"Planted({self.model!r}, d={self.d}, n={self.n}, noise={self.noise}, "
                f"seed={self.seed}{self._dtype_note()})")

    def _dtype_note(self) -> str:
        return "" if self.dtype == "float64" else f", dtype={self.dtype!r}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Planted) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(repr(self.spec()))

    def spec(self) -> dict[str, Any]:
        """The parameters that define the data set (JSON-serializable)."""
        spec = {"kind": "planted", "model": self.model.get_config(), "d": self.d,
                "n": self.n, "noise": self.noise, "seed": self.seed}
        if self.dtype != "float64":     # float64 specs read as they always have
            spec["dtype"] = self.dtype
        return spec

    @property
    def feature_dtype(self) -> np.dtype:
        """The dtype of the rows ``X`` of every shard."""
        return np.dtype(self.dtype)

    @property
    def w_star(self) -> np.ndarray:
        """The planted parameters (read-only), of length ``model.num_params(d)``."""
        return self._w_star

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        start = b * self.block_rows
        count = min(self.block_rows, self.n - start)
        X = rng_for(self.seed, DATA_X, b).standard_normal((count, self.d))
        X = X.astype(self.dtype, copy=False)
        y = self.model.planted_labels(self._w_star, X.astype(np.float64, copy=False),
                                      self.noise,
                                      lambda: rng_for(self.seed, DATA_NOISE, b))
        return X, y

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start:stop`` of the data set as ``(X, y)``, shapes (stop-start, d)."""
        start = check_int("start", start, minimum=0, maximum=self.n)
        stop = check_int("stop", stop, minimum=start, maximum=self.n)
        X = np.empty((stop - start, self.d), dtype=self.dtype)
        y = np.empty(stop - start)
        if stop == start:
            return X, y
        B = self.block_rows
        for b in range(start // B, (stop - 1) // B + 1):
            Xb, yb = self._block(b)
            lo, hi = max(start, b * B), min(stop, b * B + len(yb))
            X[lo - start:hi - start] = Xb[lo - b * B:hi - b * B]
            y[lo - start:hi - start] = yb[lo - b * B:hi - b * B]
        return X, y

    def shard(self, k: int, K: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows of shard ``k`` of ``K`` (contiguous, sizes differ by at most one)."""
        return self.rows(*shard_bounds(self.n, k, K))

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole data set (only for problems that fit in memory)."""
        return self.rows(0, self.n)


class PlantedReLU(Planted):
    """The paper's planted problem: ``Planted(ReLU(), d, n, noise, seed)``.

    >>> p = PlantedReLU(d=5, n=100, seed=1)
    >>> X, y = p.shard(0, 4)
    >>> X.shape, y.shape
    ((25, 5), (25,))
    """

    def __init__(self, d: int, n: int, noise: float = 0.0, seed: int = 0,
                 dtype: str = "float64") -> None:
        from .single_index import ReLU
        super().__init__(ReLU(), d, n, noise, seed, dtype)

    def __reduce__(self) -> tuple:
        return (PlantedReLU, (self.d, self.n, self.noise, self.seed, self.dtype))

    def __repr__(self) -> str:
        return (f"PlantedReLU(d={self.d}, n={self.n}, noise={self.noise}, "
                f"seed={self.seed}{self._dtype_note()})")
