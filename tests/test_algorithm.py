"""The shared pieces of one SGD iteration, pinned without the engine or the reference.

The engine and :mod:`ray_relu.reference` both call :mod:`ray_relu.algorithm`, so
"engine equals reference" cannot see a bug in it. Every test here checks it against
something else: hand-computed tiny cases, textbook formulas, statistical properties
(seeded, with z-score tolerances wide for a correct implementation and far exceeded by
the plausible bugs named in each docstring).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ray_relu import algorithm
from ray_relu.codecs import QSGD
from ray_relu.models import ReLU, relative_error

SEED = 12


# --------------------------------------------------------------------------- moment start
def moment_start(parts, n):
    """The ReLU's data init through the engine's path (``algorithm.data_start``)."""
    from types import SimpleNamespace
    plan = SimpleNamespace(model=ReLU(), init="moment", d=len(parts[0]), n=n, seed=0)
    return algorithm.data_start(plan, parts)


def test_moment_start_hand_computed():
    parts = [np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([-2.0, 0.5])]
    kept = [p.copy() for p in parts]
    # (2/n) * sum = (2/8) * [2, 6.5]
    np.testing.assert_array_equal(moment_start(parts, 8), [0.5, 1.625])
    for p, k in zip(parts, kept):                   # the inputs are left alone
        np.testing.assert_array_equal(p, k)
    np.testing.assert_array_equal(moment_start([np.array([3.0])], 6), [1.0])


def test_moment_start_is_an_unbiased_estimate_of_w_star():
    """For x ~ N(0, I), E[relu(<w*, x>) x] = w*/2, so (2/n) sum y_i x_i -> w*.

    Data drawn here with numpy, not by PlantedReLU; a 1/n instead of 2/n lands near
    w*/2, hundreds of standard errors away."""
    d, n = 3, 60_000
    rng = np.random.default_rng(SEED)
    w_star = np.array([0.6, -0.8, 0.0])
    X = rng.standard_normal((n, d))
    y = np.maximum(X @ w_star, 0.0)
    parts = [X[a:b].T @ y[a:b] for a, b in ((0, 10_000), (10_000, 35_000), (35_000, n))]
    w0 = moment_start(parts, n)
    standard_error = (2 * y[:, None] * X).std(axis=0) / math.sqrt(n)
    assert np.max(np.abs(w0 - w_star) / standard_error) < 5


# --------------------------------------------------------------------------- batches
def test_full_batch_is_none():
    assert algorithm.batch_indices(SEED, 3, 1, 50, None) is None


@pytest.mark.parametrize("shard_rows, batch_rows", [(10, 10), (50, 7), (1000, 999), (5, 1)])
def test_batches_are_sorted_distinct_rows_of_the_shard(shard_rows, batch_rows):
    for t in range(20):
        for k in range(3):
            idx = algorithm.batch_indices(SEED, t, k, shard_rows, batch_rows)
            assert idx.shape == (batch_rows,) and idx.dtype.kind == "i"
            assert np.all(np.diff(idx) > 0)             # sorted and distinct
            assert idx[0] >= 0 and idx[-1] < shard_rows


def test_a_batch_is_a_function_of_seed_iteration_and_worker():
    """A restarted worker redraws its rows; anything else changes them."""
    draw = lambda seed, t, k: tuple(algorithm.batch_indices(seed, t, k, 1000, 10))  # noqa: E731
    assert draw(SEED, 5, 2) == draw(SEED, 5, 2)
    others = {draw(SEED, 5, 0), draw(SEED, 5, 1), draw(SEED, 6, 2), draw(SEED + 1, 5, 2)}
    assert draw(SEED, 5, 2) not in others and len(others) == 4


def test_workers_draw_independently():
    """Two workers' batches of m rows out of N overlap in m^2/N rows on average when
    drawn independently; workers sharing one stream would overlap in all m."""
    N, m, T = 40, 10, 400
    overlaps = np.array([
        np.intersect1d(algorithm.batch_indices(SEED, t, 0, N, m),
                       algorithm.batch_indices(SEED, t, 1, N, m)).size
        for t in range(T)])
    mean = m * m / N
    # hypergeometric variance m (m/N) (1 - m/N) (N - m)/(N - 1)
    var = m * (m / N) * (1 - m / N) * (N - m) / (N - 1)
    assert abs(overlaps.mean() - mean) < 5 * math.sqrt(var / T)


def test_every_row_is_equally_likely():
    """Over many iterations each row of the shard is drawn T m / N times (chi-square,
    19 degrees of freedom: 60 is far beyond its 99.99th percentile, about 48)."""
    N, m, T = 20, 5, 2000
    counts = np.bincount(np.concatenate(
        [algorithm.batch_indices(SEED, t, 1, N, m) for t in range(T)]), minlength=N)
    expected = T * m / N
    assert ((counts - expected) ** 2 / expected).sum() < 60


# --------------------------------------------------------------------------- one step
def test_evaluate_hand_computed():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([1.0, 0.0, 2.0])
    w = np.array([2.0, 0.0])
    # rows 0 and 2: z = [2, 2], residuals [1, 0], loss (1/2)(1 + 0)/2
    loss, g = algorithm.evaluate(ReLU(), w, X, y, np.array([0, 2]))
    assert loss == 0.25
    np.testing.assert_array_equal(g, [0.5, 0.0])
    # all rows: z = [2, 0, 2]; row 1 sits at the kink with residual 0
    loss, g = algorithm.evaluate(ReLU(), w, X, y, None)
    assert loss == pytest.approx(1 / 6, rel=1e-15)
    np.testing.assert_allclose(g, [1 / 3, 0.0], rtol=1e-15)


def test_average_hand_computed_and_in_worker_order():
    grads = [np.array([1.0, 2.0]), np.array([3.0, -4.0]), np.array([5.0, 0.0])]
    kept = [g.copy() for g in grads]
    out = algorithm.average(grads, [0.5, 0.25, 0.25])
    np.testing.assert_array_equal(out, [0.5 + 0.75 + 1.25, 1.0 - 1.0 + 0.0])
    for g, k in zip(grads, kept):
        np.testing.assert_array_equal(g, k)
    # Float addition is not associative: worker order gives (1 + 1e16) - 1e16 = 0,
    # any other order 1 or 2. Bitwise equal replicas rely on the one order.
    big = [np.array([1.0]), np.array([1e16]), np.array([-1e16])]
    assert algorithm.average(big, [1.0, 1.0, 1.0])[0] == 0.0


def test_sgd_step_hand_computed_and_leaves_w_alone():
    w = np.array([1.0, -2.0])
    out = algorithm.sgd_step(w, np.array([4.0, 8.0]), 0.25)
    np.testing.assert_array_equal(out, [0.0, -4.0])
    np.testing.assert_array_equal(w, [1.0, -2.0])
    assert out is not w


def test_relative_change_hand_computed():
    assert algorithm.relative_change(np.array([3.0, 4.0]), np.array([0.0, 2.0])) \
        == pytest.approx(math.sqrt(9 + 4) / 2, rel=1e-15)
    assert algorithm.relative_change(np.array([3.0, 4.0]), np.zeros(2)) == 5.0   # absolute
    assert algorithm.relative_change(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0


def test_error_meter_hand_computed():
    meter = ReLU().error_meter(np.array([0.0, 2.0]))
    assert meter(np.zeros(2)) == 1.0
    assert meter(np.array([0.0, 3.0])) == 0.5
    assert meter(np.array([1.5, 2.0])) == 0.75
    assert ReLU().error_meter(np.zeros(2))(np.array([3.0, 4.0])) == 5.0
    assert relative_error(np.array([1.5, 2.0]), np.array([0.0, 2.0])) == 0.75
    assert np.isnan(ReLU().error_meter(None)(np.ones(2)))


# --------------------------------------------------------------------------- codec streams
def test_each_worker_and_iteration_quantizes_with_its_own_stream():
    """Same (seed, t, k): same bytes (a restarted worker resends them); any other
    worker or iteration: fresh randomness, so quantization errors average out."""
    codec = QSGD(levels=1)
    g = np.random.default_rng(0).standard_normal(200)
    enc = lambda t, k: algorithm.encode_gradient(codec, g, SEED, t, k)  # noqa: E731
    assert enc(3, 1) == enc(3, 1)
    others = {enc(3, 0), enc(3, 2), enc(4, 1), algorithm.encode_gradient(codec, g, SEED + 1, 3, 1)}
    assert enc(3, 1) not in others and len(others) == 4


def test_the_downlink_has_its_own_stream_per_iteration():
    codec = QSGD(levels=1)
    delta = np.random.default_rng(1).standard_normal(200)
    down = lambda t: algorithm.encode_downlink(codec, delta, SEED, t)  # noqa: E731
    assert down(7) == down(7)
    assert len({down(t) for t in range(5)}) == 5
    assert down(0) not in {algorithm.encode_gradient(codec, delta, SEED, 0, k) for k in range(3)}
