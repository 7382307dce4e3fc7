"""The ``Model`` base class: the contract of :mod:`ray_relu.models` and its defaults.

Pure numpy. The contract itself is written down in the package docstring
(:mod:`ray_relu.models`); this module holds the defaults a subclass inherits and
:func:`isotropic_step_size`, the untuned step rule the shipped models share.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar

import numpy as np

from .._validation import check_array, check_float, check_int
from ..seeding import RANDOM_INIT, W_STAR, rng_for
from ..shards import split_evenly

Init = Any   # an init method's name, or an array of shape (num_params(d),)


def relative_error(w: np.ndarray, w_star: np.ndarray) -> float:
    """``||w - w*|| / ||w*||`` (``||w - w*||`` when ``w* = 0``); no argument checks."""
    return relative(np.linalg.norm(w - w_star), np.linalg.norm(w_star))


def relative(diff: float, denom: float) -> float:
    """``diff / denom``, or ``diff`` itself when ``denom`` is 0 (a zero ``w*``)."""
    return float(diff / denom) if denom > 0 else float(diff)


class Model:
    """Base class of models (see :mod:`ray_relu.models` for the contract).

    A subclass must set ``model_id`` and implement :meth:`loss_and_gradient`; for
    planted problems also :meth:`predict` (the noise-free labels). Everything else has
    a default that suits a model whose parameters are one vector of length ``d``.
    """

    model_id: ClassVar[str]
    #: initializations this model knows; the first is the default.
    init_methods: ClassVar[tuple[str, ...]] = ("zero", "random")
    #: initializations computed from a statistic of the data (see :meth:`shard_statistic`).
    data_inits: ClassVar[tuple[str, ...]] = ()
    #: whether :meth:`loss_and_gradient_rows` and :meth:`shard_statistic` read float32
    #: rows as the float64 numbers they are (the same bits as on a float64 copy). If
    #: not (the default), a worker widens a float32 shard to float64 once, at start.
    reads_float32_rows: ClassVar[bool] = False

    # -- required ----------------------------------------------------------------------
    def loss_and_gradient(self, w: np.ndarray, X: np.ndarray,
                          y: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean loss over the rows of ``(X, y)`` at ``w``, and its gradient (same shape
        as ``w``). Called on every worker every round with validated float64 input
        (float32 rows too if :attr:`reads_float32_rows`); for no rows return
        ``(0.0, zeros)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss_and_gradient")

    def loss_and_gradient_rows(self, w: np.ndarray, X: np.ndarray, y: np.ndarray,
                               rows: np.ndarray | None) -> tuple[float, np.ndarray]:
        """:meth:`loss_and_gradient` on the rows ``rows`` of ``(X, y)`` (all when None),
        in that order: what a worker calls on its mini-batch. The default gathers the
        rows (``X[rows]``); a model that can read them in place overrides it (the
        single-index models do: a shard's rows are then read from memory once)."""
        if rows is not None:
            X, y = X[rows], y[rows]
        return self.loss_and_gradient(w, X, y)

    def loss(self, w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
        """:meth:`loss_and_gradient`'s loss, with the arguments checked (for users; the
        engine validates once up front and calls :meth:`loss_and_gradient`)."""
        return self.loss_and_gradient(*self._checked(w, X, y))[0]

    def gradient(self, w: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """:meth:`loss_and_gradient`'s gradient, with the arguments checked."""
        return self.loss_and_gradient(*self._checked(w, X, y))[1]

    def _checked(self, w, X, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X = check_array("X", X, (None, None))
        w = check_array("w", w, (self.num_params(X.shape[1]),))
        y = check_array("y", y, (X.shape[0],))
        self.check_labels(y)
        return w, X, y

    def predict(self, w: np.ndarray, X: np.ndarray) -> np.ndarray:
        """The model's output for the rows of ``X`` (the planted problem's clean labels)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement predict")

    # -- parameters --------------------------------------------------------------------
    def num_params(self, d: int) -> int:
        """Length of the parameter vector for ``d`` input features (default ``d``)."""
        return d

    def param_shapes(self, d: int) -> tuple[tuple[int, ...], ...]:
        """Shapes of the parameter blocks, in the order they are flattened into ``w``
        (default one vector). Codecs see ``w`` flat; low-rank codecs use the shapes."""
        return ((self.num_params(d),),)

    def readable_rows(self, X: np.ndarray) -> np.ndarray:
        """A shard's rows as this model reads them: float32 kept where the model reads
        it (:attr:`reads_float32_rows`), float64 otherwise."""
        if X.dtype == np.float64 or (X.dtype == np.float32 and self.reads_float32_rows):
            return X
        return np.ascontiguousarray(X, dtype=np.float64)

    # -- initialization ----------------------------------------------------------------
    def shard_statistic(self, init: str, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """For an init in :attr:`data_inits`: this shard's part of the statistic it
        needs. The engine sums the K parts in worker order (exactly, in float64)."""
        raise ValueError(f"{type(self).__name__} computes no init from data; "
                         f"init={init!r} needs none")

    def initial_point(self, init: Init, d: int, *, seed: int = 0,
                      statistic: np.ndarray | None = None, n: int | None = None
                      ) -> np.ndarray:
        """``w_0``. ``"zero"``: the origin; ``"random"``: ``N(0, I/d)`` per coordinate
        (stream ``seed``); an array: used as given. A data init gets the summed
        ``statistic`` and the number of rows ``n``."""
        p = self.num_params(d)
        if not isinstance(init, str):
            return check_array("init", init, (p,)).copy()
        if init == "zero":
            return np.zeros(p)
        if init == "random":
            return rng_for(seed, RANDOM_INIT).standard_normal(p) / math.sqrt(d)
        raise ValueError(self._init_message(init, d))

    def check_init(self, init: Init | None, d: int) -> Init:
        """``init`` validated up front: a known name (None: the default) or a finite
        array of shape ``(num_params(d),)``."""
        if init is None:
            return self.init_methods[0]
        if isinstance(init, str):
            if init not in self.init_methods:
                raise ValueError(self._init_message(init, d))
            return init
        return check_array("init", init, (self.num_params(d),)).copy()

    def _init_message(self, init: Any, d: int) -> str:
        names = ", ".join(map(repr, self.init_methods))
        return (f"init must be one of {names} (model {self!r}) or an array of shape "
                f"({self.num_params(d)},); got {init!r}")

    # -- data and step -----------------------------------------------------------------
    def check_labels(self, y: np.ndarray) -> None:
        """Raise ValueError if labels are not valid for this model (default: any real)."""

    def default_step_size(self, batch_size: int, d: int, *, workers: int = 1,
                          variance_factor: float = 0.0,
                          downlink_variance: float = 0.0) -> float:
        """An untuned step for Gaussian-like rows (default: a unit-curvature linear
        model's, :func:`isotropic_step_size`). Override with the model's curvature."""
        return isotropic_step_size(batch_size, d, workers=workers,
                                   variance_factor=variance_factor,
                                   downlink_variance=downlink_variance)

    # -- planted problems --------------------------------------------------------------
    def planted_parameters(self, d: int, seed: int) -> np.ndarray:
        """The planted ``w*`` of a problem with seed ``seed`` (default: a uniformly
        random unit vector of length ``num_params(d)``)."""
        w = rng_for(seed, W_STAR).standard_normal(self.num_params(d))
        return w / np.linalg.norm(w)

    def check_planted_noise(self, noise: float) -> None:
        """Raise ValueError if a planted problem of this model cannot take ``noise``."""

    def planted_labels(self, w_star: np.ndarray, X: np.ndarray, noise: float,
                       rng: Callable[[], np.random.Generator]) -> np.ndarray:
        """Labels of the planted problem: ``predict(w*, X)`` plus Gaussian noise of
        standard deviation ``noise`` (``rng()`` gives the block's noise stream)."""
        y = self.predict(w_star, X)
        if noise > 0:
            y += noise * rng().standard_normal(len(y))
        return y

    def error_meter(self, w_star: np.ndarray | None) -> Callable[[np.ndarray], float]:
        """``w -> distance of w to w*`` (relative), run every round; NaN when ``w*`` is
        unknown. Default :func:`relative_error`; a model with symmetries (permutable
        hidden units) measures the distance to the nearest equivalent ``w*``."""
        if w_star is None:
            return lambda w: float("nan")
        return lambda w: relative_error(w, w_star)

    # -- identity ----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """``{"id": model_id, **public attributes}`` (JSON-able), numcodecs style."""
        public = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return {"id": self.model_id, **public}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Model":
        """Inverse of :meth:`get_config`."""
        config = dict(config)
        config.pop("id", None)
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.get_config().items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "id")
        return f"{type(self).__name__}({args})"


def _second_moment(m: int, d: int, mean: float, second: float) -> float:
    """``c`` with ``E||H_B e||^2 = c ||e||^2`` for a batch of ``m`` Gaussian rows."""
    return second * (d + 2) / m + mean * mean * (m - 1) / m


def isotropic_step_size(batch_size: int, d: int, *, workers: int = 1,
                        variance_factor: float = 0.0, downlink_variance: float = 0.0,
                        mean: float = 1.0, second: float = 1.0, active: float = 1.0,
                        peak: float = 1.0) -> float:
    """The untuned step for a batch Hessian ``H_B = 1/m sum_i s_i x_i x_i^T``.

    Rows are ``x ~ N(0, I_d)`` and each row's curvature weight ``s_i`` has mean
    ``mean``, second moment ``second``, is positive on a fraction ``active`` of rows
    and at most ``peak``. Near the optimum ``e <- e - eta H_B e``, with
    ``E||H_B e||^2 = c ||e||^2``, ``c = second (d+2)/m + mean^2 (m-1)/m``: the error
    contracts fastest at ``eta = mean / c``. A codec of variance ``q`` on ``K``
    workers adds ``q sum_k (m_k/m)^2 c(m_k)``; a quantized downlink multiplies by
    ``1 + q_down``. Two caps: ``1 / lambda_max`` of the batch Hessian (the
    Marchenko-Pastur edge ``peak active (1 + sqrt(d / (active m)))^2``) and
    ``1 / (2 mean)``, half the population Newton step. The ReLU (``mean = second =
    active = 1/2``) is derived in ``docs/model.md``.
    """
    m = check_int("batch_size", batch_size, minimum=1)
    d = check_int("d", d, minimum=1)
    K = check_int("workers", workers, minimum=1)
    q = check_float("variance_factor", variance_factor, minimum=0.0)
    c = _second_moment(m, d, mean, second)
    if q > 0:
        c += q * sum((mk / m) ** 2 * _second_moment(mk, d, mean, second)
                     for mk in split_evenly(m, K) if mk > 0)
    c *= 1.0 + check_float("downlink_variance", downlink_variance, minimum=0.0)
    lambda_max = peak * active * (1.0 + math.sqrt(d / (active * m))) ** 2
    return float(min(1.0 / (2.0 * mean), 1.0 / lambda_max, mean / c))
