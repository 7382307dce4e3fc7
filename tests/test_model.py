"""The planted model: data layout, gradient, initializations, step defaults, validation."""

import math

import numpy as np
import pytest

from ray_relu.algorithm import moment_start
from ray_relu.model import (
    PlantedReLU, default_step_size, gradient, initial_point, loss, loss_and_gradient,
    moment_sum, relative_error, shard_bounds, split_evenly,
)


def test_w_star_is_unit_norm_and_deterministic():
    a, b, c = PlantedReLU(20, 10, seed=4), PlantedReLU(20, 99, seed=4), PlantedReLU(20, 10, seed=5)
    assert np.linalg.norm(a.w_star) == pytest.approx(1.0)
    np.testing.assert_array_equal(a.w_star, b.w_star)
    assert not np.allclose(a.w_star, c.w_star)


def test_pickled_problem_is_small_and_rebuilds_the_same_data():
    import pickle
    p = PlantedReLU(d=50_000, n=7, noise=0.1, seed=3)
    blob = pickle.dumps(p)
    assert len(blob) < 500          # parameters only, not the 400 kB w_star
    q = pickle.loads(blob)
    assert q == p
    np.testing.assert_array_equal(q.w_star, p.w_star)
    np.testing.assert_array_equal(q.shard(1, 2)[0], p.shard(1, 2)[0])


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_data_set_does_not_depend_on_the_number_of_shards(noise):
    p = PlantedReLU(d=6, n=301, noise=noise, seed=7)
    p.block_rows = 17  # many blocks, and shard edges that fall inside blocks
    X1, y1 = p.data()
    for K in (2, 3, 7, 301):
        parts = [p.shard(k, K) for k in range(K)]
        np.testing.assert_array_equal(np.vstack([X for X, _ in parts]), X1)
        np.testing.assert_array_equal(np.concatenate([y for _, y in parts]), y1)
    X, y = p.rows(40, 55)
    np.testing.assert_array_equal(X, X1[40:55])
    np.testing.assert_array_equal(y, y1[40:55])


def test_labels_follow_the_model():
    p = PlantedReLU(d=5, n=200, seed=1)
    X, y = p.data()
    np.testing.assert_allclose(y, np.maximum(X @ p.w_star, 0))
    noisy = PlantedReLU(d=5, n=20000, noise=0.5, seed=1)
    Xn, yn = noisy.data()
    resid = yn - np.maximum(Xn @ noisy.w_star, 0)
    assert np.std(resid) == pytest.approx(0.5, rel=0.03)


def test_shard_bounds_cover_rows_once():
    bounds = [shard_bounds(10, k, 3) for k in range(3)]
    assert bounds == [(0, 3), (3, 6), (6, 10)]
    assert split_evenly(10, 3) == [4, 3, 3]
    with pytest.raises(ValueError, match="K <= n"):
        shard_bounds(2, 0, 3)


def test_gradient_matches_finite_differences():
    p = PlantedReLU(d=8, n=50, noise=0.1, seed=2)
    X, y = p.data()
    w = np.random.default_rng(0).standard_normal(8)
    g = gradient(w, X, y)
    eps = 1e-6
    fd = np.array([(loss(w + eps * e, X, y) - loss(w - eps * e, X, y)) / (2 * eps)
                   for e in np.eye(8)])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)
    lval, g2 = loss_and_gradient(w, X, y)
    assert lval == pytest.approx(loss(w, X, y))
    np.testing.assert_array_equal(g, g2)


def test_gradient_is_zero_at_w_star_without_noise():
    p = PlantedReLU(d=10, n=100, seed=3)
    X, y = p.data()
    assert np.abs(gradient(p.w_star, X, y)).max() < 1e-14
    assert loss(p.w_star, X, y) < 1e-28


def test_half_slope_at_zero_moves_the_zero_start():
    p = PlantedReLU(d=10, n=4000, seed=3)
    X, y = p.data()
    g0 = gradient(np.zeros(10), X, y)
    # At w = 0 every z_i = 0, so g = -1/2 * mean(y x), and E[y x] = w*/2.
    np.testing.assert_allclose(g0, -0.5 * X.T @ y / len(y))
    assert np.dot(-g0, p.w_star) > 0


def test_moment_initialization_is_unbiased():
    d, n = 4, 200_000
    p = PlantedReLU(d, n, seed=11)
    X, y = p.data()
    w0 = moment_start([moment_sum(X, y)], n)
    # Each coordinate of 2*y*x has variance <= 4 E[y^2 x^2] <= 12; 5 sigma tolerance.
    assert np.abs(w0 - p.w_star).max() < 5 * math.sqrt(12 / n)


def test_other_initializations():
    np.testing.assert_array_equal(initial_point("zero", 3), np.zeros(3))
    r1, r2 = initial_point("random", 500, seed=1), initial_point("random", 500, seed=1)
    np.testing.assert_array_equal(r1, r2)
    assert np.linalg.norm(r1) == pytest.approx(1.0, abs=0.15)
    given = np.arange(3.0)
    out = initial_point(given, 3)
    np.testing.assert_array_equal(out, given)
    assert out is not given


def test_default_step_shrinks_like_m_over_d_and_with_codec_variance():
    d = 1000
    assert default_step_size(10**6, d) == 1.0
    small = default_step_size(10, d)
    assert small == pytest.approx(10 / d, rel=0.3)
    noisy = default_step_size(64, d, workers=4, variance_factor=30.0)
    assert noisy < default_step_size(64, d, workers=4) / 5


def second_moment(m: int, d: int) -> float:
    """c(m), written out from default_step_size's docstring."""
    return (d + 2) / (2 * m) + (m - 1) / (4 * m)


def hessian_edge_cap(m: int, d: int) -> float:
    """1 / lambda_max with the Marchenko-Pastur edge (1 + sqrt(2d/m))^2 / 2."""
    return 2 / (1 + math.sqrt(2 * d / m)) ** 2


def test_second_moment_of_the_batch_hessian_by_monte_carlo():
    """E||H_B e||^2 = c(m) ||e||^2 for Gaussian rows, H_B = 1/m sum 1{<w*,x> > 0} x x^T:
    the formula the default step rests on, checked by sampling (5 standard errors)."""
    m, d, draws = 4, 6, 40_000
    rng = np.random.default_rng(3)
    w_star = np.eye(d)[0]
    e = rng.standard_normal(d)
    X = rng.standard_normal((draws, m, d))
    active = (X @ w_star > 0)[..., None]
    He = (active * X * (X @ e)[..., None]).sum(axis=1) / m
    ratio = np.einsum("ij,ij->i", He, He) / (e @ e)
    assert abs(ratio.mean() - second_moment(m, d)) < 5 * ratio.std() / math.sqrt(draws)


@pytest.mark.parametrize("m, d, K, q, q_down", [
    (800, 100, 2, 10.0, 0.0),     # QSGD s = 1 on d = 100, full batch, two workers
    (10, 50, 3, 5.0, 0.0),        # a batch that splits unevenly: 4, 3, 3 rows
    (800, 100, 2, 10.0, 1.0),     # and a quantized downlink doubling the second moment
])
def test_default_step_is_one_over_2c_when_the_codec_term_decides(m, d, K, q, q_down):
    """eta = 1/(2c) with c = [c(m) + q sum_k (m_k/m)^2 c(m_k)] (1 + q_down), in cases
    where neither cap (1/lambda_max, 1) applies; and eta minimizes the contraction
    factor 1 - eta + eta^2 c of E||e||^2."""
    rows = [m // K + (1 if k < m % K else 0) for k in range(K)]
    c = second_moment(m, d) + q * sum((mk / m) ** 2 * second_moment(mk, d) for mk in rows)
    c *= 1 + q_down
    eta = default_step_size(m, d, workers=K, variance_factor=q, downlink_variance=q_down)
    assert eta == pytest.approx(1 / (2 * c), rel=1e-12)
    assert eta < min(1.0, hessian_edge_cap(m, d))        # the codec term decided

    def contraction(step):
        return 1 - step + step ** 2 * c

    assert contraction(eta) < min(contraction(0.9 * eta), contraction(1.1 * eta))


def test_default_step_caps():
    """d = 100, m = 200: 1/(2c) is about 0.99 but the Hessian edge caps it at exactly
    2 / (1 + 1)^2 = 0.5; a huge batch is capped at 1."""
    assert 1 / (2 * second_moment(200, 100)) > 0.99
    assert default_step_size(200, 100) == pytest.approx(0.5, rel=1e-15)
    assert default_step_size(10 ** 9, 10) == 1.0


@pytest.mark.parametrize("m", [None, 16])
def test_default_step_converges_geometrically_from_moment_init(m):
    d, n = 60, 480
    p = PlantedReLU(d, n, seed=5)
    X, y = p.data()
    w = moment_start([moment_sum(X, y)], n)
    eta = default_step_size(m or n, d)
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(3000):
        idx = rng.choice(n, m, replace=False) if m else slice(None)
        w = w - eta * gradient(w, X[idx], y[idx])
        errors.append(relative_error(w, p.w_star))
        if errors[-1] < 1e-9:
            break
    assert errors[-1] < 1e-9
    # Geometric: the log-error falls steadily, not just at the end.
    logs = np.log10(errors)
    half = len(logs) // 2
    assert logs[half] < logs[0] - 2 and logs[-1] < logs[half] - 2


def test_relative_error():
    assert relative_error(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == 1.0


def test_error_meter_is_relative_error_to_the_bit():
    from ray_relu.algorithm import error_meter
    rng = np.random.default_rng(0)
    w_star = rng.standard_normal(40)
    meter = error_meter(w_star)
    for _ in range(20):
        w = rng.standard_normal(40)
        assert meter(w) == relative_error(w, w_star)
    assert error_meter(np.zeros(3))(np.ones(3)) == relative_error(np.ones(3), np.zeros(3))
    assert np.isnan(error_meter(None)(np.ones(3)))


@pytest.mark.parametrize("kwargs, message", [
    (dict(d=0, n=5), "d must be an integer >= 1"),
    (dict(d=2.5, n=5), "d must be an integer"),
    (dict(d=3, n=-1), "n must be an integer >= 1"),
    (dict(d=3, n=5, noise=-0.1), "noise must be >= 0"),
    (dict(d=3, n=5, noise=float("nan")), "noise must be finite"),
    (dict(d=3, n=5, noise=float("inf")), "noise must be finite"),
])
def test_problem_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PlantedReLU(**kwargs)


def test_array_validation_names_the_argument_and_shape():
    X, y = PlantedReLU(3, 4).data()
    with pytest.raises(ValueError, match=r"w must have shape \(3,\), got \(2,\)"):
        gradient(np.zeros(2), X, y)
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        loss(np.zeros(3), X, y[:2])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="X must be finite"):
        gradient(np.zeros(3), bad, y)
    with pytest.raises(ValueError, match="init must be one of 'moment', 'zero', 'random'"):
        initial_point("ones", 3)
    with pytest.raises(ValueError, match="init='moment' is computed from the data.*"
                                         "moment_start.*'zero', 'random'"):
        initial_point("moment", 3)
    with pytest.raises(ValueError, match=r"init must have shape \(3,\)"):
        initial_point(np.zeros(4), 3)
    with pytest.raises(ValueError, match="init must be finite"):
        initial_point(np.array([0, np.inf, 0]), 3)
