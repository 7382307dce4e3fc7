"""A one-hidden-layer ReLU network with a fixed output layer: ``f(x) = sum_j relu(<W_j, x>)``.

The paper's natural next step: ``k`` ReLU units whose outputs are summed (the output
weights are fixed to 1, as in the planted-network literature), squared loss. The
parameters are a ``k x d`` matrix, flattened row by row into ``w`` of length ``k d``,
so codecs see one vector while :meth:`OneHiddenLayer.param_shapes` tells low-rank
codecs its shape.

Units can be permuted without changing ``f``, so the distance to the planted ``W*`` is
measured to the nearest permutation of its rows. The problem is not convex; from the
``"random"`` initialization gradient descent recovers ``W*`` (up to that permutation)
on the planted problems of the test suite, which is a measurement, not a theorem.
"""

from __future__ import annotations

import itertools

import numpy as np

from .._validation import check_int
from ..seeding import W_STAR, rng_for
from .base import Model, isotropic_step_size, relative
from .single_index import relu

# Exact matching of units by trying every permutation up to this many units (6! = 720
# sums over a k x k cost matrix, every round); above it a greedy match, an upper bound.
EXACT_MATCH_UNITS = 6


class OneHiddenLayer(Model):
    """``f(x) = sum_{j < units} relu(<W_j, x>)`` with ``W`` of shape ``(units, d)``."""

    model_id = "hidden"
    init_methods = ("random",)      # "zero" would keep all units equal for ever

    def __init__(self, units: int = 2) -> None:
        self.units = check_int("units", units, minimum=1)

    def num_params(self, d: int) -> int:
        return self.units * d

    def param_shapes(self, d: int) -> tuple[tuple[int, ...], ...]:
        return ((self.units, d),)

    def _matrix(self, w: np.ndarray, d: int) -> np.ndarray:
        return w.reshape(self.units, d)

    def predict(self, w, X):
        return relu(X @ self._matrix(w, X.shape[1]).T).sum(axis=1)

    def loss_and_gradient(self, w, X, y):
        m, d = X.shape
        if m == 0:
            return 0.0, np.zeros(self.num_params(d))
        Z = X @ self._matrix(w, d).T                     # (m, units)
        r = relu(Z).sum(axis=1) - y
        slope = (Z > 0) + 0.5 * (Z == 0)
        G = (r[:, None] * slope).T @ X / m               # (units, d)
        return float(0.5 * np.dot(r, r) / m), G.ravel()

    def default_step_size(self, batch_size, d, *, workers=1, variance_factor=0.0,
                          downlink_variance=0.0):
        # Each unit alone is a ReLU; units share rows, which couples them: for nearly
        # orthogonal units the population Hessian's top eigenvalue is about
        # (units + 1) / 4 against a single ReLU's 1/2, so the step shrinks by that ratio.
        single = isotropic_step_size(batch_size, d, workers=workers,
                                     variance_factor=variance_factor,
                                     downlink_variance=downlink_variance,
                                     mean=0.5, second=0.5, active=0.5)
        return single * 2.0 / (self.units + 1)

    def planted_parameters(self, d, seed):
        W = rng_for(seed, W_STAR).standard_normal((self.units, d))
        return (W / np.linalg.norm(W, axis=1, keepdims=True)).ravel()

    def error_meter(self, w_star):
        if w_star is None:
            return lambda w: float("nan")
        k = self.units
        target = w_star.reshape(k, -1)
        denom = np.linalg.norm(w_star)
        perms = np.array(list(itertools.permutations(range(k)))) \
            if k <= EXACT_MATCH_UNITS else None

        def distance(w: np.ndarray) -> float:
            W = w.reshape(k, -1)
            cost = ((W[:, None, :] - target[None, :, :]) ** 2).sum(axis=2)   # (k, k)
            if perms is not None:
                best = cost[np.arange(k), perms].sum(axis=1).min()
            else:
                best = _greedy_cost(cost)
            return relative(np.sqrt(best), denom)

        return distance


def _greedy_cost(cost: np.ndarray) -> float:
    """Total cost of matching rows to columns greedily, cheapest pair first."""
    cost = cost.copy()
    total = 0.0
    for _ in range(len(cost)):
        i, j = np.unravel_index(np.argmin(cost), cost.shape)
        total += cost[i, j]
        cost[i, :] = np.inf
        cost[:, j] = np.inf
    return total
