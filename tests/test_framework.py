"""Bring your own model: every shipped model, and one defined here, fitted on Ray.

The Ray engine must compute what the single-process reference computes for any model
(the same iterates to round-off with exact messages), and every shipped model must
converge on its planted problem in both aggregation modes.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import ray.cloudpickle

from ray_relu import fit
from ray_relu.models import (
    LeakyReLU, Linear, Logistic, Model, OneHiddenLayer, Planted, ReLU, relative_error,
)
from ray_relu.reference import sgd

# This module is imported by pytest, not installed: Ray's workers could not import it,
# so its classes travel by value (what a script's or a notebook's classes do anyway).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.usefixtures("ray_session")
MODES = ("master", "all-to-all")


class Cubic(Model):
    """A model written here: ``f(x) = <w, x> + <w, x>^3 / 10``, squared loss."""

    model_id = "cubic"

    def predict(self, w, X):
        z = X @ w
        return z + z ** 3 / 10

    def loss_and_gradient(self, w, X, y):
        if len(y) == 0:
            return 0.0, np.zeros_like(w)
        z = X @ w
        r = z + z ** 3 / 10 - y
        return float(0.5 * r @ r / len(y)), X.T @ (r * (1 + 0.3 * z * z)) / len(y)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("model", [ReLU(), Linear(), LeakyReLU(0.2), OneHiddenLayer(2),
                                   Cubic()], ids=repr)
def test_each_model_converges_on_ray_in_both_modes(model, mode):
    problem = Planted(model, d=6, n=300, seed=2)
    result = fit(problem, model=model, workers=2, mode=mode, batch_size=60,
                 iterations=4000, tol=1e-6, step_size=0.3 if isinstance(model, Cubic)
                 else None, progress=False)
    assert result.converged and result.rel_error <= 1e-6
    assert result.config["model"] == model.get_config()
    assert result.w.shape == (model.num_params(6),)


@pytest.mark.parametrize("mode", MODES)
def test_logistic_fit_reaches_the_maximum_likelihood_estimate(mode):
    problem = Planted(Logistic(), d=6, n=400, seed=3)
    X, y = problem.data()
    w = np.zeros(6)
    for _ in range(40):       # Newton's method: the estimate itself
        s = 0.5 * (1 + np.tanh(0.5 * X @ w))
        w -= np.linalg.solve((X * (s * (1 - s))[:, None]).T @ X / len(y),
                             X.T @ (s - y) / len(y))
    result = fit(problem, codec="fp64", workers=3, mode=mode, iterations=600, tol=0.0,
                 progress=False)
    assert relative_error(result.w, w) < 1e-6
    # w* is the generating parameter, not the estimate: rel_error stops at the floor.
    assert 0.02 < result.rel_error < 0.5


@pytest.mark.parametrize("model, mode", [(OneHiddenLayer(3), "master"),
                                         (LeakyReLU(0.1), "all-to-all"),
                                         (Cubic(), "all-to-all"), (Logistic(), "master")],
                         ids=repr)
def test_ray_engine_equals_the_reference_for_other_models(model, mode):
    problem = Planted(model, d=5, n=120, seed=7)
    options = dict(model=model, codec="fp64", workers=3, batch_size=30, iterations=15,
                   tol=0.0, seed=4, step_size=0.2)
    ref = sgd(problem, **options)
    result = fit(problem, mode=mode, progress=False, **options)
    for name in ("loss", "rel_error"):
        np.testing.assert_allclose(result.history.column(name).to_numpy(),
                                   ref.history.column(name).to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(result.w, ref.iterates[-1], rtol=1e-12, atol=1e-15)


def test_a_model_other_than_the_datas_stops_on_the_relative_change():
    result = fit(Planted(ReLU(), d=5, n=200, seed=1), model=Linear(), workers=2,
                 iterations=500, tol=1e-9, progress=False)
    assert result.stopping_rule == "rel_change" and result.converged
    assert np.isnan(result.history.column("rel_error").to_numpy()).all()
