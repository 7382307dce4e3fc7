"""The planted single-ReLU model: data, loss, gradient, initializations, step defaults.

Pure numpy (no Ray), float64 throughout. The mathematics: ``docs/model.md``.

Convention for the derivative of the ReLU at 0: ``relu'(0) = 1/2`` (the average of
the two one-sided derivatives). With the usual ``relu'(0) = 0`` the gradient vanishes
identically at ``w = 0``, and the ``"zero"`` initialization could never move.
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np

from ._validation import check_array, check_float, check_int
from .seeding import DATA_NOISE, DATA_X, RANDOM_INIT, W_STAR, rng_for

# Each block of rows is generated from its own stream, so the data set depends on
# (d, n, noise, seed) only: any split into shards concatenates to the same rows.
# About 2**20 values (8 MiB) per block whatever d is.
_VALUES_PER_BLOCK = 1 << 20

INIT_METHODS = ("moment", "zero", "random")
Init = Union[str, np.ndarray]


class PlantedReLU:
    """The planted problem ``y = max(0, <w*, x>) + noise * z`` with ``x ~ N(0, I_d)``.

    Parameters
    ----------
    d : int
        Input dimension, >= 1.
    n : int
        Number of samples, >= 1.
    noise : float
        Standard deviation of Gaussian label noise, >= 0 (default 0: realizable).
    seed : int
        Seed of everything random in the problem: ``w_star`` and every row.

    ``w_star`` has unit norm. Rows are generated on demand, where :meth:`rows` or
    :meth:`shard` is called (on a Ray worker, typically), never stored here.

    Examples
    --------
    >>> p = PlantedReLU(d=5, n=100, seed=1)
    >>> X, y = p.shard(0, 4)
    >>> X.shape, y.shape
    ((25, 5), (25,))
    """

    def __init__(self, d: int, n: int, noise: float = 0.0, seed: int = 0) -> None:
        self.d = check_int("d", d, minimum=1)
        self.n = check_int("n", n, minimum=1)
        self.noise = check_float("noise", noise, minimum=0.0)
        self.seed = check_int("seed", seed, minimum=0)
        w = rng_for(self.seed, W_STAR).standard_normal(self.d)
        self._w_star = w / np.linalg.norm(w)
        self._w_star.setflags(write=False)
        self.block_rows = max(1, _VALUES_PER_BLOCK // self.d)

    def __reduce__(self) -> tuple:
        # Pickle the parameters only: w_star is rebuilt from the seed where the problem
        # lands. Each Ray actor receives the problem as a constructor argument; with
        # w_star inside, d = 1e6 would ship 8 MB per actor through the object store, and
        # Ray warns that such actors may fail to restart once those objects are gone.
        return (PlantedReLU, (self.d, self.n, self.noise, self.seed))

    def __repr__(self) -> str:
        return (f"PlantedReLU(d={self.d}, n={self.n}, noise={self.noise}, "
                f"seed={self.seed})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlantedReLU) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.spec().items())))

    def spec(self) -> dict:
        """The parameters that define the data set (JSON-serializable)."""
        return {"kind": "planted", "d": self.d, "n": self.n, "noise": self.noise,
                "seed": self.seed}

    @property
    def w_star(self) -> np.ndarray:
        """The planted weight vector (unit norm, read-only)."""
        return self._w_star

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        start = b * self.block_rows
        count = min(self.block_rows, self.n - start)
        X = rng_for(self.seed, DATA_X, b).standard_normal((count, self.d))
        y = relu(X @ self._w_star)
        if self.noise > 0:
            y += self.noise * rng_for(self.seed, DATA_NOISE, b).standard_normal(count)
        return X, y

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start:stop`` of the data set as ``(X, y)``, shapes (stop-start, d)."""
        start = check_int("start", start, minimum=0, maximum=self.n)
        stop = check_int("stop", stop, minimum=start, maximum=self.n)
        X = np.empty((stop - start, self.d))
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
        start, stop = shard_bounds(self.n, k, K)
        return self.rows(start, stop)

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole data set (only for problems that fit in memory)."""
        return self.rows(0, self.n)


def shard_bounds(n: int, k: int, K: int) -> tuple[int, int]:
    """Row range ``[start, stop)`` of shard ``k`` when ``n`` rows are split ``K`` ways."""
    K = check_int("K", K, minimum=1)
    k = check_int("k", k, minimum=0, maximum=K - 1)
    if K > n:
        raise ValueError(f"cannot split n={n} rows into K={K} shards: "
                         f"need K <= n")
    return k * n // K, (k + 1) * n // K


def split_evenly(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` integers that differ by at most one."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def relu(z: np.ndarray) -> np.ndarray:
    """``max(0, z)`` elementwise."""
    return np.maximum(z, 0.0)


def _check_data(w: np.ndarray, X: np.ndarray, y: np.ndarray):
    X = check_array("X", X, (None, None))
    d = X.shape[1]
    w = check_array("w", w, (d,))
    y = check_array("y", y, (X.shape[0],))
    return w, X, y


def loss(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Mean squared loss ``1/(2m) * sum (relu(<w, x_i>) - y_i)^2`` (0 for no rows)."""
    w, X, y = _check_data(w, X, y)
    if len(y) == 0:
        return 0.0
    r = relu(X @ w) - y
    return float(0.5 * np.mean(r * r))


def loss_and_gradient(w: np.ndarray, X: np.ndarray, y: np.ndarray,
                      *, check: bool = True) -> tuple[float, np.ndarray]:
    """Loss and (sub)gradient of one batch; one pass over ``X`` for both.

    ``g = 1/m * sum_i (relu(z_i) - y_i) * relu'(z_i) * x_i`` with ``z_i = <w, x_i>`` and
    ``relu'(0) = 1/2``. ``check=False`` skips validation on hot paths whose inputs
    were validated once up front.
    """
    if check:
        w, X, y = _check_data(w, X, y)
    m = len(y)
    if m == 0:
        return 0.0, np.zeros(X.shape[1])
    z = X @ w
    r = relu(z) - y
    slope = (z > 0) + 0.5 * (z == 0)
    g = X.T @ (r * slope) / m
    return float(0.5 * np.dot(r, r) / m), g


def gradient(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The batch (sub)gradient of :func:`loss` (see :func:`loss_and_gradient`)."""
    return loss_and_gradient(w, X, y)[1]


def relative_error(w: np.ndarray, w_star: np.ndarray) -> float:
    """``||w - w*|| / ||w*||`` (``||w||`` when ``w* = 0``)."""
    w_star = check_array("w_star", w_star, (None,))
    w = check_array("w", w, w_star.shape)
    denom = np.linalg.norm(w_star)
    diff = np.linalg.norm(w - w_star)
    return float(diff / denom) if denom > 0 else float(diff)


def moment_sum(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``sum_i y_i x_i``: the part of the moment initialization one shard contributes."""
    return X.T @ y


def initial_point(init: Init, d: int, *, seed: int = 0) -> np.ndarray:
    """The starting point ``w_0`` for an initialization that needs no data.

    - ``"zero"``: the origin; it moves only because ``relu'(0) = 1/2``.
    - ``"random"``: ``N(0, I_d / d)`` (norm about 1), from stream ``seed``.
    - an array of shape ``(d,)``: used as given (copied).

    ``"moment"`` (the default of :func:`ray_relu.fit`) needs the data: it is
    ``(2/n) sum_i y_i x_i``, summed over the shards where they live
    (:func:`moment_sum` per shard, :func:`ray_relu.algorithm.moment_start` to combine;
    see ``docs/model.md``). Asking for it here raises a ValueError.
    """
    d = check_int("d", d, minimum=1)
    if isinstance(init, str):
        if init == "moment":
            raise ValueError("init='moment' is computed from the data, not by initial_point: "
                             "w_0 = (2/n) * sum over shards of moment_sum(X, y), see "
                             "ray_relu.algorithm.moment_start; here init must be 'zero', "
                             f"'random' or an array of shape ({d},)")
        if init == "zero":
            return np.zeros(d)
        if init == "random":
            return rng_for(seed, RANDOM_INIT).standard_normal(d) / math.sqrt(d)
        raise ValueError(f"init must be one of {', '.join(map(repr, INIT_METHODS))} "
                         f"or an array of shape ({d},); got {init!r}")
    return check_array("init", init, (d,)).copy()


def check_init(init: Init, d: int) -> Init:
    """Validate ``init`` up front (an allowed name, or a finite array of shape (d,))."""
    if isinstance(init, str):
        if init not in INIT_METHODS:
            raise ValueError(f"init must be one of {', '.join(map(repr, INIT_METHODS))} "
                             f"or an array of shape ({d},); got {init!r}")
        return init
    return check_array("init", init, (d,)).copy()


def _second_moment(m: int, d: int) -> float:
    """``c(m)`` with ``E||g_B||^2 = c(m) * ||w - w*||^2`` near ``w*`` (Gaussian rows)."""
    # E[H_B^2] = (1/m) E[1{.} ||x||^2 x x^T] + (1 - 1/m) (E H)^2 = ((d+2)/(2m) + (m-1)/(4m)) I
    return (d + 2) / (2 * m) + (m - 1) / (4 * m)


def default_step_size(batch_size: int, d: int, *, workers: int = 1,
                      variance_factor: float = 0.0,
                      downlink_variance: float = 0.0) -> float:
    """A step size that needs no tuning, derived from (batch size, d, codec variance).

    Near ``w*`` the update is ``e <- e - eta * H_B e`` with the batch Hessian
    ``H_B = 1/m sum_{i in B} 1{<w*, x_i> > 0} x_i x_i^T``, whose mean is ``I/2``. For
    Gaussian rows ``E||H_B e||^2 = c(m) ||e||^2`` with ``c(m) = (d+2)/(2m) + (m-1)/(4m)``,
    so ``E||e'||^2 = (1 - eta + eta^2 c) ||e||^2``, minimized by ``eta = 1/(2c)``: about
    ``m/d`` for small batches.

    A codec with ``E||Q(g) - g||^2 <= q ||g||^2``, applied by each of ``K`` workers to
    its partial gradient over ``m_k`` rows (weight ``m_k/m``), adds
    ``q * sum_k (m_k/m)^2 c(m_k)`` to ``c``: noisier codecs get smaller steps.

    A master that also quantizes the update it sends (variance ``q_down``) multiplies
    the second moment by ``1 + q_down``.

    Two caps keep the default safe where the average-case picture is optimistic:
    ``1/lambda_max`` of the batch Hessian (Marchenko-Pastur edge
    ``(1 + sqrt(2d/m))^2 / 2``; matters for a fixed full batch), and 1 (half the
    population Newton step). Derivation: ``docs/model.md``.
    """
    m = check_int("batch_size", batch_size, minimum=1)
    d = check_int("d", d, minimum=1)
    K = check_int("workers", workers, minimum=1)
    q = check_float("variance_factor", variance_factor, minimum=0.0)
    c = _second_moment(m, d)
    if q > 0:
        c += q * sum((mk / m) ** 2 * _second_moment(mk, d)
                     for mk in split_evenly(m, K) if mk > 0)
    c *= 1.0 + check_float("downlink_variance", downlink_variance, minimum=0.0)
    lambda_max = 0.5 * (1.0 + math.sqrt(2.0 * d / m)) ** 2
    return float(min(1.0, 1.0 / lambda_max, 1.0 / (2.0 * c)))
