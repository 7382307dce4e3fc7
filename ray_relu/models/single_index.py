"""Single-index models ``f(x) = link(<w, x>)``: ReLU (the paper), Linear, LeakyReLU,
Logistic. float64; the piecewise-linear ones (all but Logistic) compute loss and
gradient in one compiled pass over each row (:mod:`._rows`), Logistic in numpy.

Convention for kinks: the derivative at 0 is the average of the one-sided ones
(``relu'(0) = 1/2``). With ``relu'(0) = 0`` the ReLU's gradient would vanish
identically at ``w = 0`` and the ``"zero"`` initialization could never move.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .._validation import check_float
from ._rows import piecewise_linear_loss_and_gradient, weighted_row_sum
from .base import Model, isotropic_step_size

# ||w*|| of the planted logistic problem: with a unit w* the labels are nearly coin
# flips (P(y = 1 | x) = sigmoid(g), g ~ N(0, 1)) and w* is barely identifiable.
LOGISTIC_PLANTED_NORM = 3.0


def relu(z: np.ndarray) -> np.ndarray:
    """``max(0, z)`` elementwise."""
    return np.maximum(z, 0.0)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` without overflow for large ``|z|``."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class _SquaredLoss(Model):
    """``1/(2m) sum (link(<w, x_i>) - y_i)^2`` for a piecewise-linear link: ``z`` above
    0 and ``a z`` below (``a`` = :attr:`_negative_slope`), slope ``(1 + a) / 2`` at 0;
    with the moment initialization.

    For Gaussian rows ``E[y x] = c w*`` with ``c = E[link'(g)]``, ``g ~ N(0, 1)``
    (Stein's lemma), so ``w_0 = (1 / (c n)) sum_i y_i x_i``; each shard contributes
    its ``sum_i y_i x_i``. Subclasses set the link, ``a`` and the curvature moments of
    the default step (:func:`isotropic_step_size`). Loss and gradient are computed in
    one compiled pass over each row (:mod:`._rows`), in place on a worker's shard,
    which may be float32 (each value is widened as it is read, so the bits are those
    of the float64 copy); so is the moment statistic.
    """

    init_methods = ("moment", "zero", "random")
    data_inits = ("moment",)
    reads_float32_rows = True             # the compiled pass widens each value it reads
    _moment_gain = 1.0                    # c = E[link'(g)]
    _curvature: dict = {}                 # mean, second, active of s = link'(z)^2
    _negative_slope = 1.0                 # a: the link's slope below 0

    def _link(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, w: np.ndarray, X: np.ndarray) -> np.ndarray:
        return self._link(X @ w)

    def loss_and_gradient(self, w, X, y):
        return piecewise_linear_loss_and_gradient(w, X, y, None, self._negative_slope)

    def loss_and_gradient_rows(self, w, X, y, rows):
        return piecewise_linear_loss_and_gradient(w, X, y, rows, self._negative_slope)

    def shard_statistic(self, init, X, y):
        return weighted_row_sum(X, y)

    def initial_point(self, init, d, *, seed=0, statistic=None, n=None):
        if isinstance(init, str) and init == "moment":
            if statistic is None or n is None:
                raise ValueError("init='moment' is computed from the data: pass the "
                                 "summed shard_statistic and the number of rows n")
            return (1.0 / (self._moment_gain * n)) * statistic
        return super().initial_point(init, d, seed=seed)

    def default_step_size(self, batch_size, d, *, workers=1, variance_factor=0.0,
                          downlink_variance=0.0):
        return isotropic_step_size(batch_size, d, workers=workers,
                                   variance_factor=variance_factor,
                                   downlink_variance=downlink_variance, **self._curvature)


class ReLU(_SquaredLoss):
    """The paper's model: ``f(x) = max(0, <w, x>)``, squared loss.

    Default init ``"moment"``: ``w_0 = (2/n) sum_i y_i x_i``. Default step: half the
    rows are active (curvature 1), half are not (0); derivation in ``docs/model.md``.
    """

    model_id = "relu"
    _moment_gain = 0.5
    _negative_slope = 0.0
    _curvature = {"mean": 0.5, "second": 0.5, "active": 0.5}

    def _link(self, z):
        return relu(z)


class Linear(_SquaredLoss):
    """Least squares: ``f(x) = <w, x>``. Moment init ``(1/n) sum_i y_i x_i``."""

    model_id = "linear"
    _curvature = {"mean": 1.0, "second": 1.0, "active": 1.0}

    def _link(self, z):
        return z


class LeakyReLU(_SquaredLoss):
    """``f(x) = max(<w, x>, alpha <w, x>)`` with slope ``alpha`` in ``[0, 1)`` below 0.

    ``alpha = 0`` is the ReLU's function (with its own model id). Moment init
    ``(2 / ((1 + alpha) n)) sum_i y_i x_i``.
    """

    model_id = "leaky"

    def __init__(self, alpha: float = 0.1) -> None:
        alpha = check_float("alpha", alpha, minimum=0.0)
        if alpha >= 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        self.alpha = alpha

    @property
    def _moment_gain(self) -> float:
        return (1.0 + self.alpha) / 2.0

    @property
    def _negative_slope(self) -> float:
        return self.alpha

    @property
    def _curvature(self) -> dict:
        a2 = self.alpha ** 2
        return {"mean": (1.0 + a2) / 2.0, "second": (1.0 + a2 * a2) / 2.0,
                "active": 1.0 if self.alpha > 0 else 0.5}

    def _link(self, z):
        return np.where(z > 0, z, self.alpha * z)



class Logistic(Model):
    """Logistic regression: ``P(y = 1 | x) = sigmoid(<w, x>)``, cross-entropy loss.

    Labels in ``[0, 1]``: hard labels ``{0, 1}``, or probabilities. The planted
    problem draws hard labels ``y ~ Bernoulli(sigmoid(<w*, x>))`` with
    ``||w*|| = 3``; its minimizer is then the maximum-likelihood estimate, within
    about ``sqrt(d/n)`` of ``w*``, not ``w*`` itself (``noise`` must be 0: the labels
    are noisy by construction).
    """

    model_id = "logistic"

    def predict(self, w, X):
        return sigmoid(X @ w)

    def loss_and_gradient(self, w, X, y):
        m = len(y)
        if m == 0:
            return 0.0, np.zeros(X.shape[1])
        z = X @ w
        loss = np.mean(np.logaddexp(0.0, z) - y * z)
        return float(loss), X.T @ (sigmoid(z) - y) / m

    def check_labels(self, y):
        if y.size and (np.min(y) < 0.0 or np.max(y) > 1.0):
            raise ValueError("labels of a Logistic model must be in [0, 1] (hard labels "
                             f"0/1 or probabilities); got values in [{np.min(y):g}, "
                             f"{np.max(y):g}]")

    def default_step_size(self, batch_size, d, *, workers=1, variance_factor=0.0,
                          downlink_variance=0.0):
        # sigmoid' <= 1/4: the curvature of the flattest fit, a safe (slow-side) bound.
        return isotropic_step_size(batch_size, d, workers=workers,
                                   variance_factor=variance_factor,
                                   downlink_variance=downlink_variance,
                                   mean=0.25, second=0.0625, peak=0.25)

    def planted_parameters(self, d, seed):
        return LOGISTIC_PLANTED_NORM * super().planted_parameters(d, seed)

    def check_planted_noise(self, noise):
        if noise != 0:
            raise ValueError("a planted Logistic problem takes noise=0: its labels are "
                             f"Bernoulli draws already; got noise={noise}")

    def planted_labels(self, w_star: np.ndarray, X: np.ndarray, noise: float,
                       rng: Callable[[], np.random.Generator]) -> np.ndarray:
        return (rng().random(len(X)) < self.predict(w_star, X)).astype(np.float64)
