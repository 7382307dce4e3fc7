"""Models and planted problems: data layout, gradients, initializations, step
defaults, validation; the ReLU's numbers to the last bit."""

import hashlib
import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from ray_relu.models import (
    LeakyReLU, Linear, Logistic, Model, OneHiddenLayer, Planted, PlantedReLU, ReLU,
    available_models, get_model, isotropic_step_size, relative_error,
)
from ray_relu.shards import shard_bounds, split_evenly

RELU = ReLU()
loss, gradient = RELU.loss, RELU.gradient


def loss_and_gradient(w, X, y):
    return RELU.loss_and_gradient(w, X, y)


def moment_start(X, y, n):
    return RELU.initial_point("moment", X.shape[1], statistic=RELU.shard_statistic(
        "moment", X, y), n=n)


def initial_point(init, d, *, seed=0):
    return RELU.initial_point(init, d, seed=seed)


def default_step_size(m, d, **kwargs):
    return RELU.default_step_size(m, d, **kwargs)


ALL_MODELS = [ReLU(), Linear(), LeakyReLU(0.2), Logistic(), OneHiddenLayer(3)]


def test_w_star_is_unit_norm_and_deterministic():
    a, b, c = PlantedReLU(20, 10, seed=4), PlantedReLU(20, 99, seed=4), PlantedReLU(20, 10, seed=5)
    assert np.linalg.norm(a.w_star) == pytest.approx(1.0)
    np.testing.assert_array_equal(a.w_star, b.w_star)
    assert not np.allclose(a.w_star, c.w_star)


def test_pickled_problem_is_small_and_rebuilds_the_same_data():
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


def test_float32_planted_rows_are_the_rounded_draws_and_labelled_from_them():
    double = PlantedReLU(d=40, n=300, noise=0.1, seed=4)
    single = PlantedReLU(d=40, n=300, noise=0.1, seed=4, dtype="float32")
    X, y = single.shard(1, 3)
    assert X.dtype == np.float32 and y.dtype == np.float64
    np.testing.assert_array_equal(X, double.shard(1, 3)[0].astype(np.float32))
    clean = PlantedReLU(d=40, n=300, seed=4, dtype="float32")
    Xc, yc = clean.data()
    np.testing.assert_array_equal(yc, np.maximum(Xc.astype(np.float64) @ clean.w_star, 0))
    np.testing.assert_array_equal(single.w_star, double.w_star)
    assert "dtype" not in double.spec() and single.spec()["dtype"] == "float32"
    assert single != double and single.feature_dtype == np.float32
    again = pickle.loads(pickle.dumps(single))
    assert again == single and repr(again).endswith("dtype='float32')")
    with pytest.raises(ValueError, match="dtype must be one of 'float64', 'float32'; "
                                         "got 'float16'"):
        PlantedReLU(d=4, n=10, dtype="float16")


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
    w0 = moment_start(X, y, n)
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
    w = moment_start(X, y, n)
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
        RELU.check_init("ones", 3)
    with pytest.raises(ValueError, match="init='moment' is computed from the data"):
        initial_point("moment", 3)
    with pytest.raises(ValueError, match=r"init must have shape \(3,\)"):
        initial_point(np.zeros(4), 3)
    with pytest.raises(ValueError, match="init must be finite"):
        initial_point(np.array([0, np.inf, 0]), 3)


# ---- the ReLU model keeps the numbers it had before models were pluggable --------------

def test_relu_reference_runs_equal_the_recorded_ones_to_the_last_bit():
    """tests/data/relu_golden.json was written by tools/make_relu_golden.py: iterates
    (sha256) and history, bit for bit. First from the code before the models protocol
    existed; rewritten once, on purpose, when the gradient moved to the one-pass kernel
    of ``ray_relu/models/_rows.py`` (a fixed summation order instead of BLAS's; the
    iterates moved by at most 3e-16 relative, the quantized cases not at all), and
    once more when the moment start did (``weighted_row_sum``, rows added in order, so
    float32 rows give the bits of their float64 copy: at most 1.8e-16 relative).

    The history's norms still go through OpenBLAS,
    whose AVX-512 dot products round differently from its AVX2 ones: the Makefile pins
    ``OPENBLAS_CORETYPE=Haswell``, the kernel they were recorded with; run the test
    through ``make test`` or with that variable set."""
    from ray_relu.reference import sgd
    golden = json.loads((Path(__file__).parent / "data" / "relu_golden.json").read_text())
    for case in golden["cases"]:
        run = sgd(PlantedReLU(**case["problem"]), model=ReLU(),
                  iterations=golden["iterations"], tol=0.0, **case["options"])
        digest = hashlib.sha256(np.ascontiguousarray(run.iterates).tobytes()).hexdigest()
        assert digest == case["iterates_sha256"], (
            f"{case['problem']} {case['options']}: iterates differ from the recorded "
            f"ones (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')!r})")
        for name, values in case["history"].items():
            assert [float(v).hex() for v in run.history.column(name).to_pylist()] == values


# ---- the one-pass kernel of the piecewise-linear models (ray_relu/models/_rows.py) ----

PIECEWISE = [ReLU(), Linear(), LeakyReLU(0.2)]


def documented_order(w, X, y, rows, negative_slope):
    """_rows.py's module doc, in plain Python floats: 32 lanes (lane l sums the products
    j = l mod 32 in order), the 32 lane sums added pairwise as 8-wide vectors (four
    vectors summed (0 + 1) + (2 + 3), then halves 8 -> 4 -> 2 -> 1), then the last
    d mod 32 products; rows one after another."""
    d = X.shape[1]
    body = 32 * (d // 32)
    g, loss = [0.0] * d, 0.0
    for i in rows:
        x = [float(v) for v in X[i]]
        lanes = [0.0] * 32
        for j in range(body):
            lanes[j % 32] += x[j] * float(w[j])
        vec = [(lanes[l] + lanes[8 + l]) + (lanes[16 + l] + lanes[24 + l]) for l in range(8)]
        while len(vec) > 1:
            half = len(vec) // 2
            vec = [vec[l] + vec[half + l] for l in range(half)]
        z = vec[0]
        for j in range(body, d):
            z += x[j] * float(w[j])
        if z > 0:
            r, slope = z - y[i], 1.0
        elif z < 0:
            r, slope = negative_slope * z - y[i], negative_slope
        else:
            r, slope = -y[i], 0.5 + 0.5 * negative_slope
        loss += r * r
        for j in range(d):
            g[j] += r * slope * x[j]
    return 0.5 * loss / len(rows), np.array(g) / len(rows)


@pytest.mark.parametrize("d", [1, 7, 31, 32, 33, 64, 100, 257])
@pytest.mark.parametrize("model", PIECEWISE, ids=repr)
def test_one_pass_gradient_sums_in_the_documented_order(model, d):
    rng = np.random.default_rng(d)
    X, y = rng.standard_normal((40, d)), rng.standard_normal(40)
    w = rng.standard_normal(d)
    rows = np.sort(rng.choice(40, 13, replace=False))
    loss_value, g = model.loss_and_gradient_rows(w, X, y, rows)
    want_loss, want_g = documented_order(w, X, y, rows, model._negative_slope)
    assert loss_value == want_loss
    np.testing.assert_array_equal(g, want_g)


@pytest.mark.parametrize("model", PIECEWISE, ids=repr)
def test_rows_in_place_equal_the_gathered_rows_and_numpy_formula(model):
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((60, 75)), rng.standard_normal(60)
    X[5] = 0.0                                  # a row with <w, x> = 0: the kink's slope
    w = rng.standard_normal(75)
    X.setflags(write=False)                     # shards in Ray's object store are read-only
    rows = np.array([2, 5, 9, 31, 59])
    in_place = model.loss_and_gradient_rows(w, X, y, rows)
    gathered = model.loss_and_gradient(w, X[rows], y[rows])
    assert in_place[0] == gathered[0]
    np.testing.assert_array_equal(in_place[1], gathered[1])
    z = X[rows] @ w
    a = model._negative_slope
    r = np.where(z > 0, z, a * z) - y[rows]
    slope = np.where(z > 0, 1.0, np.where(z < 0, a, (1 + a) / 2))
    assert (z == 0).sum() == 1                  # the zero row
    np.testing.assert_allclose(in_place[1], X[rows].T @ (r * slope) / 5,
                               rtol=1e-12, atol=1e-15)
    assert in_place[0] == pytest.approx(0.5 * np.dot(r, r) / 5, rel=1e-13)
    empty = model.loss_and_gradient_rows(w, X, y, rows[:0])
    assert empty[0] == 0.0 and not empty[1].any()


@pytest.mark.parametrize("d", [1, 31, 33, 257])
@pytest.mark.parametrize("model", PIECEWISE, ids=repr)
def test_float32_rows_give_the_bits_of_their_float64_copy(model, d):
    rng = np.random.default_rng(d)
    X = rng.standard_normal((40, d)).astype(np.float32)
    y, w = rng.standard_normal(40), rng.standard_normal(d)
    rows = np.sort(rng.choice(40, 13, replace=False))
    single = model.loss_and_gradient_rows(w, X, y, rows)
    double = model.loss_and_gradient_rows(w, X.astype(np.float64), y, rows)
    assert single[0] == double[0]
    np.testing.assert_array_equal(single[1], double[1])
    # Other dtypes are converted to float64 rather than read as if they were it.
    half = model.loss_and_gradient_rows(w, X.astype(np.float16), y, rows)
    widened = model.loss_and_gradient_rows(w, X.astype(np.float16).astype(np.float64), y, rows)
    np.testing.assert_array_equal(half[1], widened[1])


def test_one_pass_gradient_carries_a_diverged_w_into_loss_and_gradient():
    X, y = np.ones((3, 40)), np.ones(3)
    w = np.full(40, np.nan)
    loss_value, g = RELU.loss_and_gradient_rows(w, X, y, np.arange(3))
    assert math.isnan(loss_value) and np.isnan(g).all()


@pytest.mark.parametrize("m, d, K, q, q_down", [
    (1, 1, 1, 0.0, 0.0), (7, 1000, 3, 2.5, 0.0), (800, 100, 2, 10.0, 1.0),
    (200, 100, 1, 0.0, 0.0), (10 ** 9, 10, 4, 0.3, 0.1), (33, 7, 5, 1e-7, 0.0)])
def test_relu_step_is_the_closed_form_of_docs_model_md(m, d, K, q, q_down):
    rows = split_evenly(m, K)
    c = second_moment(m, d) + q * sum((mk / m) ** 2 * second_moment(mk, d) for mk in rows)
    c *= 1 + q_down
    expected = min(1.0, hessian_edge_cap(m, d), 1 / (2 * c))
    assert default_step_size(m, d, workers=K, variance_factor=q,
                             downlink_variance=q_down) == pytest.approx(expected, rel=1e-14)


# ---- every model -------------------------------------------------------------------

@pytest.mark.parametrize("model", ALL_MODELS, ids=repr)
def test_gradient_matches_finite_differences_for_every_model(model):
    d = 6
    X, y = Planted(model, d=d, n=80, seed=2).data()
    w = np.random.default_rng(1).standard_normal(model.num_params(d)) * 0.7
    g = model.gradient(w, X, y)
    assert g.shape == w.shape
    eps = 1e-6
    fd = np.array([(model.loss(w + eps * e, X, y) - model.loss(w - eps * e, X, y)) / (2 * eps)
                   for e in np.eye(len(w))])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)
    empty_loss, empty_grad = model.loss_and_gradient(w, X[:0], y[:0])
    assert empty_loss == 0.0 and empty_grad.shape == w.shape and not empty_grad.any()


@pytest.mark.parametrize("model", [m for m in ALL_MODELS if not isinstance(m, Logistic)],
                         ids=repr)
def test_noise_free_planted_data_is_interpolated_at_w_star(model):
    p = Planted(model, d=7, n=300, seed=3)
    X, y = p.data()
    np.testing.assert_allclose(y, model.predict(p.w_star, X))
    assert np.abs(model.gradient(p.w_star, X, y)).max() < 1e-13
    assert model.error_meter(p.w_star)(p.w_star) == 0.0


@pytest.mark.parametrize("model", ALL_MODELS, ids=repr)
def test_planted_rows_do_not_depend_on_the_number_of_shards(model):
    p = Planted(model, d=5, n=97, seed=4)
    p.block_rows = 13
    X1, y1 = p.data()
    for K in (2, 5):
        parts = [p.shard(k, K) for k in range(K)]
        np.testing.assert_array_equal(np.vstack([X for X, _ in parts]), X1)
        np.testing.assert_array_equal(np.concatenate([y for _, y in parts]), y1)


def test_planted_problems_pickle_to_their_parameters():

    for model in ALL_MODELS:
        p = Planted(model, d=20_000, n=5, seed=1)
        blob = pickle.dumps(p)
        assert len(blob) < 600
        q = pickle.loads(blob)
        assert q == p and q.model == model
        np.testing.assert_array_equal(q.w_star, p.w_star)
    assert PlantedReLU(3, 9, seed=2) == Planted(ReLU(), 3, 9, seed=2)
    assert PlantedReLU(3, 9, seed=2) != Planted(Linear(), 3, 9, seed=2)


@pytest.mark.parametrize("model, gain", [(ReLU(), 0.5), (Linear(), 1.0),
                                         (LeakyReLU(0.3), 0.65)], ids=repr)
def test_moment_initialization_is_unbiased_for_each_single_index_model(model, gain):
    """E[y x] = E[link'(g)] w* (Stein): the moment estimate lands near w*."""
    d, n = 4, 200_000
    p = Planted(model, d, n, seed=11)
    X, y = p.data()
    w0 = model.initial_point("moment", d, statistic=model.shard_statistic("moment", X, y),
                             n=n)
    # Each coordinate of y x / gain has variance <= 3 / gain^2; 5 sigma tolerance.
    assert np.abs(w0 - p.w_star).max() < 5 * math.sqrt(3 / gain ** 2 / n)


def test_hidden_layer_error_ignores_the_order_of_units():
    model = OneHiddenLayer(units=3)
    p = Planted(model, d=5, n=10, seed=2)
    W = p.w_star.reshape(3, 5)
    meter = model.error_meter(p.w_star)
    assert meter(W[[2, 0, 1]].ravel()) == 0.0
    moved = W[[1, 2, 0]].copy()
    moved[0] += 0.1
    # Matched to the nearest order, the only error is the 0.1 added to 5 coordinates.
    assert meter(moved.ravel()) == pytest.approx(0.1 * math.sqrt(5) / np.linalg.norm(W),
                                                 rel=1e-12)
    assert meter(moved.ravel()) < relative_error(moved.ravel(), p.w_star)
    assert model.param_shapes(5) == ((3, 5),) and model.num_params(5) == 15


def test_hidden_layer_greedy_matching_above_the_exact_limit():
    model = OneHiddenLayer(units=8)
    p = Planted(model, d=6, n=10, seed=2)
    W = p.w_star.reshape(8, 6)
    order = np.random.default_rng(0).permutation(8)
    assert model.error_meter(p.w_star)(W[order].ravel()) == 0.0


def test_logistic_labels_are_bernoulli_and_checked():
    model = Logistic()
    p = Planted(model, d=5, n=40_000, seed=6)
    X, y = p.data()
    assert set(np.unique(y)) == {0.0, 1.0}
    assert np.linalg.norm(p.w_star) == pytest.approx(3.0)
    # P(y = 1 | x) = sigmoid(<w*, x>): the mean label matches the mean probability.
    prob = model.predict(p.w_star, X)
    assert abs(y.mean() - prob.mean()) < 5 * math.sqrt(0.25 / len(y))
    with pytest.raises(ValueError, match=r"labels of a Logistic model must be in \[0, 1\]"):
        model.loss(np.zeros(5), X[:3], np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="noise=0"):
        Planted(model, d=5, n=10, noise=0.1)


def test_get_model_and_configs_round_trip():
    assert available_models() == sorted(["relu", "linear", "leaky", "logistic", "hidden"])
    for model in ALL_MODELS:
        again = get_model(model.get_config())
        assert again == model and repr(again) == repr(model)
    assert get_model(None) == ReLU()
    assert get_model("leaky", alpha=0.25) == LeakyReLU(0.25) != LeakyReLU(0.3)
    with pytest.raises(ValueError, match="unknown model 'mlp'; available: hidden, leaky"):
        get_model("mlp")
    with pytest.raises(ValueError, match="invalid parameters for model 'relu'"):
        get_model("relu", alpha=2)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\)"):
        LeakyReLU(1.5)
    with pytest.raises(ValueError, match="units must be an integer >= 1"):
        OneHiddenLayer(0)
    with pytest.raises(ValueError, match="init must be one of 'random'"):
        OneHiddenLayer(2).check_init("zero", 4)


@pytest.mark.parametrize("model", ALL_MODELS, ids=repr)
def test_every_model_converges_on_its_planted_problem_with_its_default_step(model):
    """Reference SGD with the untuned default step, full batch and mini-batch, K = 3:
    rel_error 1e-6 on noise-free planted data; the logistic fit reaches the
    maximum-likelihood estimate (computed here by Newton's method)."""
    from ray_relu.reference import sgd
    p = Planted(model, d=8, n=600, seed=1)
    for batch_size in (None, 60):
        if isinstance(model, Logistic):
            run = sgd(p, workers=3, iterations=800, tol=0.0)
            assert relative_error(run.iterates[-1], logistic_mle(*p.data())) < 1e-6
            break
        run = sgd(p, workers=3, batch_size=batch_size, iterations=3000, tol=1e-6)
        assert run.history.column("rel_error")[-1].as_py() <= 1e-6, batch_size


def logistic_mle(X, y):
    from ray_relu.models.single_index import sigmoid
    w = np.zeros(X.shape[1])
    for _ in range(40):
        s = sigmoid(X @ w)
        H = (X * (s * (1 - s))[:, None]).T @ X / len(y)
        w -= np.linalg.solve(H, X.T @ (s - y) / len(y))
    return w


def test_isotropic_step_matches_a_monte_carlo_contraction_for_a_linear_model():
    """For least squares the rule's c is E||H_B e||^2 / ||e||^2 with s_i = 1."""
    m, d, draws = 5, 4, 40_000
    rng = np.random.default_rng(5)
    e = rng.standard_normal(d)
    X = rng.standard_normal((draws, m, d))
    He = (X * (X @ e)[..., None]).sum(axis=1) / m
    ratio = np.einsum("ij,ij->i", He, He) / (e @ e)
    c = (d + 2) / m + (m - 1) / m
    assert abs(ratio.mean() - c) < 5 * ratio.std() / math.sqrt(draws)
    assert isotropic_step_size(m, d) == pytest.approx(min(0.5, 1 / c,
                                                          1 / (1 + math.sqrt(d / m)) ** 2))


class LeastSquares(Model):
    """A user's model defined in this test module: least squares written from scratch,
    with only what the contract requires (and ``predict`` for planted data)."""

    model_id = "myls"

    def predict(self, w, X):
        return X @ w

    def loss_and_gradient(self, w, X, y):
        if len(y) == 0:
            return 0.0, np.zeros_like(w)
        r = X @ w - y
        return float(0.5 * r @ r / len(y)), X.T @ r / len(y)


def test_a_user_model_needs_only_loss_and_gradient():
    model = LeastSquares()
    assert model.get_config() == {"id": "myls"} and repr(model) == "LeastSquares()"
    assert model.check_init(None, 3) == "zero"
    from ray_relu.reference import sgd
    run = sgd(Planted(model, d=5, n=200, seed=3), workers=2, iterations=500, tol=1e-8)
    assert run.history.column("rel_error")[-1].as_py() <= 1e-8


def test_run_parameters_are_checked_by_name():
    from ray_relu.reference import sgd
    from ray_relu.settings import RunConfig, run_config
    p = PlantedReLU(d=3, n=30)
    with pytest.raises(ValueError, match="unknown parameter\\(s\\) 'step'; the algorithm's "
                                         "parameters are model, codec"):
        sgd(p, step=0.1)
    with pytest.raises(ValueError, match="config must be a RunConfig, got dict"):
        run_config({"codec": "fp32"})
    assert run_config(RunConfig(workers=2), seed=3) == RunConfig(workers=2, seed=3)
    with pytest.raises(ValueError, match="model must be a ray_relu.models.Model, got str"):
        Planted("relu", d=3, n=30)
    with pytest.raises(ValueError, match="model must be a Model, a name or a config dict"):
        sgd(p, model=3)
