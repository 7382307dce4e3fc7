"""The compressor zoo on its own (no Ray): bytes, determinism, statistics, bit counts.

Statistical checks use fixed seeds nobody tuned and tolerances from the sampling error
(a z-test at 5 standard errors), so they fail on a wrong estimator, not on bad luck.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ray_relu.codecs import (CodecError, ErrorFeedback, Natural, PowerSGD, RandK, Sign,
                             TernGrad, TopK, available_codecs, get_codec)
from ray_relu.codecs.base import HEADER_SIZE

ZOO = [TopK(k=5), TopK(ratio=0.3), TopK(k=7, levels=3), RandK(k=6), RandK(ratio=0.5),
       Sign(), TernGrad(), Natural(), PowerSGD(), PowerSGD(rank=2, rows=4)]
UNBIASED = [RandK(k=6), TernGrad(), Natural()]


def vectors(d: int = 24) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    spiky = np.zeros(d)
    spiky[3], spiky[17] = 40.0, -1e-3
    return [rng.standard_normal(d), rng.standard_normal(d) * np.logspace(-8, 8, d),
            np.full(d, -2.5), spiky, np.zeros(d)]


def body_bytes(msg: bytes) -> int:
    return len(msg) - HEADER_SIZE


@pytest.mark.parametrize("codec", ZOO, ids=repr)
def test_registered_round_trip_and_same_seed_same_bytes(codec):
    assert codec.codec_id in available_codecs()
    assert get_codec(codec.get_config()) == codec
    for v in vectors():
        msg = codec.encode(v, rng=np.random.default_rng(3))
        assert msg == codec.encode(v, rng=np.random.default_rng(3))
        out = codec.decode(msg, max_dim=v.size)
        assert out.shape == v.shape and out.dtype == np.float64
        if not v.any():
            assert not out.any()
        with pytest.raises(CodecError, match="encoded by codec"):
            get_codec("fp32").decode(msg)


def test_topk_keeps_the_largest_and_breaks_ties_by_index():
    v = np.array([0.5, -3.0, 2.0, -2.0, 2.0, 0.1])
    out = TopK(k=3).decode(TopK(k=3).encode(v))
    np.testing.assert_array_equal(out, [0, -3.0, 2.0, -2.0, 0, 0])   # ties: lower index
    assert TopK(ratio=0.5).kept(6) == 3 and TopK(k=100).kept(6) == 6


def test_sign_is_the_l1_scaled_sign_and_one_bit_a_coordinate():
    v = np.array([1.0, -2.0, 0.0, 4.0, -1.0])
    msg = Sign().encode(v)
    np.testing.assert_array_equal(Sign().decode(msg), 1.6 * np.array([1, -1, 1, 1, -1]))
    for d in (1, 8, 9, 1000):
        assert body_bytes(Sign().encode(np.ones(d))) == 8 + math.ceil(d / 8)


def test_natural_rounds_to_neighbouring_powers_of_two():
    rng = np.random.default_rng(4)
    v = rng.standard_normal(500) * 10.0 ** rng.uniform(-300, 300, 500)
    out = Natural().decode(Natural().encode(v, rng=rng))
    nonzero = out != 0
    assert np.all(np.sign(out[nonzero]) == np.sign(v[nonzero]))
    mantissa, _ = np.frexp(np.abs(out[nonzero]))
    assert np.all(mantissa == 0.5)                                   # powers of two
    ratio = np.abs(out[nonzero]) / np.abs(v[nonzero])
    assert np.all((ratio > 0.5) & (ratio <= 2.0))
    assert body_bytes(Natural().encode(v, rng=rng)) == 2 + math.ceil(500 / 8) + 500


def test_powersgd_is_exact_on_rank_one_and_plain_about_vectors():
    rng = np.random.default_rng(8)
    M = np.outer(rng.standard_normal(4), rng.standard_normal(6))
    codec = PowerSGD(rank=1, rows=4)
    np.testing.assert_allclose(codec.decode(codec.encode(M.ravel(), rng=rng)), M.ravel(),
                               rtol=1e-6, atol=1e-6 * np.abs(M).max())
    assert body_bytes(codec.encode(M.ravel(), rng=rng)) == 8 + 4 * (4 + 6)
    # A vector is a 1 x d matrix: d + 1 numbers go out, nothing is compressed.
    v = rng.standard_normal(50)
    assert body_bytes(PowerSGD().encode(v, rng=rng)) == 8 + 4 * 51
    with pytest.raises(ValueError, match="divisible by rows"):
        PowerSGD(rows=7).encode(v, rng=rng)


@pytest.mark.parametrize("codec", UNBIASED, ids=repr)
def test_unbiased_codecs_are_unbiased(codec):
    """The mean of N decodes misses v by ``||mean - v||^2``, whose expectation is the
    variance over N, at most ``q ||v||^2 / N``: a bias of a fraction of that fails.
    (Norm-wise, because rare events such as TernGrad keeping a coordinate 1e-12 of the
    maximum give per-coordinate sample deviations of zero.)"""
    rng = np.random.default_rng(2025)
    draws = 4000
    for v in vectors()[:4]:
        out = np.array([codec.decode(codec.encode(v, rng=rng)) for _ in range(draws)])
        miss = np.sum((out.mean(axis=0) - v) ** 2)
        assert miss <= 4 * codec.variance_bound(v.size) * np.sum(v ** 2) / draws, (codec, v)


@pytest.mark.parametrize("codec", [c for c in ZOO if c.variance_bound(24) is not None],
                         ids=repr)
def test_error_is_within_the_variance_bound(codec):
    rng = np.random.default_rng(31)
    draws = 400
    for v in vectors()[:4]:
        errors = [np.sum((codec.decode(codec.encode(v, rng=rng)) - v) ** 2)
                  for _ in range(draws)]
        mean, se = np.mean(errors), np.std(errors) / math.sqrt(draws)
        assert mean <= codec.variance_bound(v.size) * np.sum(v ** 2) + 5 * se, (codec, v)


def test_biased_codecs_are_biased():
    """What error feedback is for: top-k and sign lose mass systematically."""
    v = np.array([3.0, 1.0, 0.5, 0.25])
    assert not np.allclose(TopK(k=1).decode(TopK(k=1).encode(v)), v)
    assert Sign().decode(Sign().encode(v))[0] < v[0]


def binomial_bits(d: int, k: int) -> float:
    return (math.lgamma(d + 1) - math.lgamma(k + 1) - math.lgamma(d - k + 1)) / math.log(2)


def test_bits_against_each_codecs_information_bound():
    """Index sets cost at least log2 C(d, k) bits; ternary digits log2(3) bits each.
    Elias-gamma gaps stay within 2x of the first; base-3 packing within 1 % of the second."""
    rng = np.random.default_rng(6)
    d = 10_000
    v = rng.standard_normal(d)
    for k in (10, 100, 1000):
        index_bits = 8 * (body_bytes(TopK(k=k).encode(v)) - 5 - 4 * k)
        assert binomial_bits(d, k) <= index_bits <= 2 * binomial_bits(d, k) + 8
    dense = TernGrad().encode(v, rng=rng)                   # max-scaled: ~20 % nonzero
    assert 8 * (body_bytes(dense) - 9) <= min(1.01 * d * math.log2(3),
                                              8 * math.ceil(d / 5))
    spiky = np.zeros(d)
    spiky[::97] = 1.0
    sparse = TernGrad().encode(spiky, rng=rng)             # every kept one survives
    nnz = d // 97 + 1
    assert 8 * (body_bytes(sparse) - 13) <= 2 * binomial_bits(d, nnz) + 2 * nnz + 8


def test_error_feedback_carries_what_was_lost():
    ef = ErrorFeedback(TopK(k=1))
    g = np.array([1.0, 0.75, 0.0])
    msg, residual = ef.compress(g, None)
    np.testing.assert_array_equal(ef.decode(msg), [1.0, 0, 0])
    np.testing.assert_array_equal(residual, [0, 0.75, 0])
    msg, residual = ef.compress(g, residual)               # 0.75 + 0.75 now wins
    np.testing.assert_array_equal(ef.decode(msg), [0, 1.5, 0])
    np.testing.assert_array_equal(residual, [1.0, 0, 0])
    assert get_codec(ef.get_config()) == ef
    assert ef.get_config() == {"id": "ef", "codec": {"id": "topk", "k": 1, "ratio": None,
                                                     "levels": None}}
    with pytest.raises(ValueError, match="wrap the compressor itself"):
        ErrorFeedback(ef)


@pytest.mark.parametrize("make, match", [
    (lambda: TopK(), "exactly one of k"), (lambda: TopK(k=3, ratio=0.5), "exactly one"),
    (lambda: TopK(ratio=1.5), r"ratio must be in \(0, 1\]"),
    (lambda: TopK(k=0), "k must be"), (lambda: RandK(ratio=0.0), "ratio must be"),
    (lambda: TopK(k=2, levels=0), "levels must be"),
    (lambda: PowerSGD(rank=0), "rank must be"), (lambda: get_codec("ef", codec="nope"),
                                                 "unknown codec 'nope'")])
def test_bad_parameters_name_what_is_allowed(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("codec", [TopK(k=2), Sign(), TernGrad(), Natural()], ids=repr)
def test_non_finite_input_is_refused(codec):
    with pytest.raises(ValueError, match="must be finite"):
        codec.encode(np.array([1.0, np.nan, 2.0]))


def test_natural_refuses_magnitudes_whose_rounding_overflows():
    with pytest.raises(ValueError, match="below 2\\*\\*1023"):
        Natural().encode(np.array([1.0, 1.5 * 2.0 ** 1023]))


@pytest.mark.parametrize("codec", [TopK(k=2), RandK(k=2), PowerSGD()], ids=repr)
def test_values_beyond_float32_are_refused_not_sent_as_inf(codec):
    with pytest.raises(ValueError, match="beyond the float32 range"):
        codec.encode(np.array([1.0, -1e39, 3.0]), rng=np.random.default_rng(0))
