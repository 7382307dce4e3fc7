"""Codecs on real bytes: interface, exactness, QSGD statistics, bit counts, bad input.

The statistical tests compare sample means with the exact moments of the quantizer
(computed here from the definition, not from the codec) with z-score tolerances, and
those exact moments with the QSGD paper's bounds. Every draw is seeded, so each test is
deterministic; the tolerances are wide enough that a correct codec passes for any seed
with overwhelming probability and tight enough that a biased or noisier one fails (see
``test_statistics_catch_a_biased_quantizer``).
"""

from __future__ import annotations

import json
import math
import struct
import warnings

import numpy as np
import pytest

from ray_relu.codecs import (FP16, QSGD, Codec, CodecError, FullPrecision,
                             available_codecs, get_codec)
from ray_relu.codecs.base import HEADER_SIZE, MAX_DIM

NAMES = ("fp64", "fp32", "fp16", "qsgd")
# The wire format (docs/codecs.md), written out independently of the codecs:
HEADER_FMT = struct.Struct("<4sB8sQQ")      # magic, version, id, d, payload length
QSGD_FMT = struct.Struct("<IIBBh")          # levels, bucket, norm, coding, exponent
QSGD_START = HEADER_SIZE + QSGD_FMT.size    # where a qsgd message's scales begin
CODING_AT = HEADER_SIZE + 9                 # the coding byte of a qsgd message
EXPONENT_AT = {"qsgd": HEADER_SIZE + 10, "fp16": HEADER_SIZE}


def raw_header(magic=b"RRLC", version=4, codec_id=b"qsgd", d=8, payload_len=0) -> bytes:
    return HEADER_FMT.pack(magic, version, codec_id, d, payload_len)


def qsgd_message(body: bytes, levels=4, bucket=0, norm=1, coding=1, exponent=0,
                 payload_len=None, **header) -> bytes:
    """A qsgd message: header, parameter block, then ``body`` (scales and bits)."""
    payload = QSGD_FMT.pack(levels, bucket, norm, coding, exponent) + body
    return raw_header(payload_len=len(payload) if payload_len is None else payload_len,
                      **header) + payload


def header_exponent(msg: bytes) -> int:
    """The scale exponent of a qsgd or fp16 message."""
    return struct.unpack_from("<h", msg, EXPONENT_AT[msg[5:13].rstrip(b"\0").decode()])[0]


def with_payload_len(msg: bytes) -> bytes:
    """``msg`` (header and payload) with the header's payload length fixed up to the
    real one, so that the codec's own payload checks, not the header's, must object."""
    fixed = msg[:21] + struct.pack("<Q", len(msg) - HEADER_SIZE) + msg[HEADER_SIZE:]
    assert len(fixed) == len(msg) and fixed[HEADER_SIZE:] == msg[HEADER_SIZE:]
    return fixed


def sample_vector(d: int = 24, seed: int = 0) -> np.ndarray:
    """Mixed magnitudes and signs, some exact zeros."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(d) * rng.choice([0.01, 1.0, 5.0], size=d)
    v[::7] = 0.0
    return v



# --------------------------------------------------------------------------- helpers
def paper_nnz_bound(s: int, d: int) -> float:
    """QSGD Lemma 3.1: E[nnz(Q_s(v))] <= s (s + sqrt d)."""
    return s * (s + math.sqrt(d))


def paper_bits_bound(s: int, d: int) -> float:
    """QSGD Theorem 3.2 (o(1) dropped): expected bits of the Elias code of Q_s(v)."""
    k = s * (s + math.sqrt(d))
    return (3 + 1.5 * math.log2(2 * (s * s + d) / k)) * k + 32


def bucket_scales(codec: QSGD, v: np.ndarray) -> np.ndarray:
    """Each coordinate's bucket scale, as the codec stores it (exact)."""
    scales, _ = codec.quantize(v, rng=np.random.default_rng(0))
    assert scales.dtype == np.float64
    b = len(v) if codec.bucket_size is None else min(codec.bucket_size, len(v))
    assert scales.shape == (-(-len(v) // b),)
    return np.repeat(scales.astype(np.float64), b)[:len(v)]


def exact_moments(codec: QSGD, v: np.ndarray, unit: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per coordinate: variance of Q(v)_i (in units of ``2**-unit``, so that tiny
    vectors do not underflow) and P(Q(v)_i != 0), from the definition."""
    c = np.ldexp(bucket_scales(codec, v), unit)
    v = np.ldexp(v, unit)
    s = codec.levels
    r = np.divide(s * np.abs(v), c, out=np.zeros_like(v), where=c > 0)
    p = r - np.floor(r)
    var = (c / s) ** 2 * p * (1 - p)
    p_nonzero = np.where(r >= 1, 1.0, r)
    return var, p_nonzero


def draw(codec: Codec, v: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` decoded encodings of ``v`` (one fresh draw each) and their byte lengths."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, len(v)))
    sizes = np.empty(n, dtype=np.int64)
    for i in range(n):
        msg = codec.encode(v, rng=rng)
        out[i] = codec.decode(msg)
        sizes[i] = len(msg)
    return out, sizes


def max_z(samples: np.ndarray, v: np.ndarray, var: np.ndarray) -> float:
    """Largest |z| of the per-coordinate sample means against ``v``.

    ``var`` must not have underflowed: see the ``unit`` of :func:`exact_moments`.
    """
    n = samples.shape[0]
    err = samples.mean(axis=0) - v
    exact = var == 0
    # coordinates with zero variance must be reproduced exactly (up to rounding)
    assert np.all(np.abs(err[exact]) <= 1e-12 * (np.abs(v[exact]) + 1e-300)), err[exact]
    if exact.all():
        return 0.0
    return float(np.max(np.abs(err[~exact]) / np.sqrt(var[~exact] / n)))


# --------------------------------------------------------------------------- interface
def test_registry_names_and_ids():
    assert set(NAMES) <= set(available_codecs())
    for name in NAMES:
        codec = get_codec(name)
        assert isinstance(codec, Codec)
        assert codec.codec_id == name
        msg = codec.encode(np.ones(3))
        assert msg[5:13].rstrip(b"\0") == name.encode()
    assert type(get_codec("fp64")) is FullPrecision and get_codec("fp64").dtype == "float64"
    assert type(get_codec("fp32")) is FullPrecision and get_codec("fp32").dtype == "float32"
    assert type(get_codec("fp16")) is FP16
    assert type(get_codec("qsgd")) is QSGD


NEEDS = {"ef": {"codec": "qsgd"}, "topk": {"ratio": 0.1}, "randk": {"k": 30}}
WITH_VALUE_CASES = [*((name, NEEDS.get(name, {})) for name in sorted(available_codecs())),
                    ("qsgd", {"levels": 3, "coding": "elias"}),
                    ("qsgd", {"levels": 200, "coding": "ans"}),
                    ("qsgd", {"levels": 7, "coding": "dense", "bucket_size": 64}),
                    ("qsgd", {"levels": 16, "norm": "max", "bucket_size": 100})]


@pytest.mark.parametrize("name, params", WITH_VALUE_CASES)
@pytest.mark.parametrize("scale", [1.0, 1e-310, 0.0])
def test_encode_with_value_is_encode_then_decode_bit_for_bit(name, params, scale):
    """The sender's copy of its own message (which spares it a decode) must be the very
    vector every receiver decodes: signs of zero and the tiny-scale path included."""
    codec = get_codec({"id": name, **params})
    v = sample_vector(1000, seed=4) * scale
    message = codec.encode(v, rng=np.random.default_rng(5))
    same, value = codec.encode_with_value(v, rng=np.random.default_rng(5))
    assert same == message
    decoded = codec.decode(message)
    assert value.dtype == np.float64 and value.shape == decoded.shape
    np.testing.assert_array_equal(value.view(np.uint64), decoded.view(np.uint64))


def test_unknown_codec_lists_the_allowed_names():
    with pytest.raises(ValueError) as info:
        get_codec("fp8")
    message = str(info.value)
    assert "'fp8'" in message
    for name in NAMES:
        assert name in message


@pytest.mark.parametrize("spec, params, match", [
    ("qsgd", {"bogus": 1}, "bogus"),
    ("fp32", {"dtype": "float64"}, "float64"),
    ("fp16", {"levels": 4}, "levels"),
    ({"levels": 4}, {}, "'id'"),
    ({"id": "qsgd", "levels": 4}, {"levels": 8}, "levels"),
    (3, {}, "int"),
])
def test_get_codec_rejects_bad_specs(spec, params, match):
    with pytest.raises(ValueError, match=match):
        get_codec(spec, **params)


def test_get_codec_returns_instances_unchanged():
    codec = QSGD(levels=3)
    assert get_codec(codec) is codec
    with pytest.raises(ValueError, match="existing codec"):
        get_codec(codec, levels=4)


CONFIG_CASES = [
    ("fp64", {}), ("fp32", {}), ("fp16", {}), ("qsgd", {}),
    ("qsgd", {"levels": 1, "bucket_size": 5, "norm": "max", "coding": "dense", "seed": 3}),
    ("qsgd", {"levels": 255, "bucket_size": None, "norm": "l2", "coding": "elias", "seed": 0}),
]


@pytest.mark.parametrize("name, params", CONFIG_CASES + [
    ("qsgd", {"levels": 300, "bucket_size": 3, "coding": "dense"}),
    ("qsgd", {"levels": 2 ** 31 - 1, "coding": "auto"}), ("qsgd", {"coding": "ans"})])
def test_max_message_bytes_bounds_every_message(name, params):
    """The bound master mode plans with: every message fits it (the fixed-size codecs
    hit it exactly); codings whose length depends on the draw say None."""
    codec = get_codec(name, **params)
    rng = np.random.default_rng(4)
    for d in (1, 2, 7, 64, 1000):
        bound = codec.max_message_bytes(d)
        if params.get("coding") in ("elias", "ans"):
            assert bound is None
            continue
        for v in (rng.standard_normal(d), np.zeros(d), np.full(d, 1e30),
                  rng.standard_normal(d) ** 9):
            size = len(codec.encode(v, rng=rng))
            assert size <= bound, (d, size, bound)
            if name in ("fp64", "fp32", "fp16"):
                assert size == bound
    with pytest.raises(ValueError, match="d must be"):
        codec.max_message_bytes(0)


@pytest.mark.parametrize("name, params", CONFIG_CASES)
def test_config_round_trip(name, params):
    codec = get_codec(name, **params)
    config = codec.get_config()
    assert config["id"] == name
    assert json.loads(json.dumps(config)) == config                   # JSON-able
    again = get_codec(json.loads(json.dumps(config)))
    assert again == codec and hash(again) == hash(codec) and type(again) is type(codec)
    assert type(codec).from_config(config) == codec
    assert repr(again) == repr(codec)
    v = sample_vector()
    one = codec.encode(v, rng=np.random.default_rng(5))
    two = again.encode(v, rng=np.random.default_rng(5))
    assert one == two                                  # same config -> same bytes
    np.testing.assert_array_equal(codec.decode(two), again.decode(one))


def test_from_config_checks_the_id():
    with pytest.raises(ValueError, match="fp16"):
        QSGD.from_config({"id": "fp16"})
    with pytest.raises(ValueError, match="'fp16'"):
        FullPrecision.from_config({"id": "fp16"})


def test_codecs_differ_by_config():
    assert QSGD(levels=4) != QSGD(levels=5)
    assert QSGD(levels=4, seed=1) != QSGD(levels=4, seed=2)
    assert get_codec("fp32") != get_codec("fp64")
    assert get_codec("fp32") != get_codec("fp16")


# --------------------------------------------------------------------------- exact codecs
def special_values() -> np.ndarray:
    tiny = np.finfo(np.float64).tiny
    return np.array([0.0, -0.0, 1.0, -1.0, np.pi, 1e-310, -5e-324, tiny,
                     np.finfo(np.float64).max, -np.finfo(np.float64).max, 1e300, 1e-300,
                     123456789.123456789])


def test_fp64_is_bitwise_exact():
    rng = np.random.default_rng(1)
    v = np.concatenate([special_values(), rng.standard_normal(100) * 10.0 ** rng.integers(-300, 300, 100)])
    codec = get_codec("fp64")
    msg = codec.encode(v)
    assert len(msg) == HEADER_SIZE + 8 * v.size
    out = codec.decode(msg)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out.view(np.uint64), v.view(np.uint64))   # even -0.0


def test_fp32_equals_numpy_cast():
    rng = np.random.default_rng(2)
    v = np.concatenate([[0.0, -0.0, 1e-40, -1e-45, 3.4e38, -3.4e38, 1 + 2.0 ** -24,
                         1 + 3 * 2.0 ** -24, 16777217.0],
                        rng.standard_normal(200) * 10.0 ** rng.integers(-30, 30, 200)])
    codec = get_codec("fp32")
    msg = codec.encode(v)
    assert len(msg) == HEADER_SIZE + 4 * v.size
    out = codec.decode(msg)
    assert out.dtype == np.float64
    expected = v.astype(np.float32)
    np.testing.assert_array_equal(out.astype(np.float32).view(np.uint32), expected.view(np.uint32))
    np.testing.assert_array_equal(out, expected.astype(np.float64))
    v32 = v.astype(np.float32)                         # float32 input: bitwise round trip
    np.testing.assert_array_equal(codec.decode(codec.encode(v32)).astype(np.float32).view(np.uint32),
                                  v32.view(np.uint32))


def fp16_probe_values() -> np.ndarray:
    u = 2.0 ** -10                                     # spacing of halves in [1, 2)
    return np.array([
        0.0, -0.0, 1.0, -1.0, 1 + u / 2, 1 + 3 * u / 2, 1 + u / 2 + 1e-9,  # ties to even
        2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 2.0 ** -25 + 1e-12, 3 * 2.0 ** -26,  # subnormals
        1e-9, 65504.0, -65504.0, 65519.99, -65519.99, 0.1, 1 / 3, 2049.0, 2051.0,
    ])


def test_fp16_equals_numpy_round_to_nearest():
    rng = np.random.default_rng(3)
    v = np.concatenate([fp16_probe_values(),
                        rng.standard_normal(500) * 10.0 ** rng.integers(-8, 5, 500)])
    v = v[np.abs(v) < 65520]
    codec = get_codec("fp16", scale="none")
    msg = codec.encode(v)
    assert len(msg) == HEADER_SIZE + 2 + 2 * v.size           # header, exponent, halves
    out = codec.decode(msg)
    expected = v.astype(np.float16)
    np.testing.assert_array_equal(out.astype(np.float16).view(np.uint16), expected.view(np.uint16))
    np.testing.assert_array_equal(out, expected.astype(np.float64))
    assert out[v == 1 + 2.0 ** -11][0] == 1.0                   # tie -> even
    assert out[v == 1 + 3 * 2.0 ** -11][0] == 1 + 2 * 2.0 ** -10
    assert out[v == 65519.99][0] == 65504.0                     # rounds down, stays finite


def test_fp16_error_is_within_its_variance_bound():
    rng = np.random.default_rng(4)
    codec = get_codec("fp16")
    for _ in range(20):
        v = rng.standard_normal(300) * 10.0 ** rng.uniform(-3, 3)
        v = np.where(np.abs(v) < 2.0 ** -14, 2.0 ** -14, v)     # normal half range
        err = codec.decode(codec.encode(v)) - v
        assert err @ err <= codec.variance_bound(v.size) * (v @ v)


def plain(name):
    """The codec without any message scaling (fp16's plain cast)."""
    return get_codec(name, scale="none") if name == "fp16" else get_codec(name)


@pytest.mark.parametrize("name, value", [("fp16", 65520.0), ("fp16", -1e6), ("fp16", 1e300),
                                         ("fp32", 3.5e38), ("fp32", -1e300)])
def test_values_beyond_the_format_range_raise(name, value):
    codec = plain(name)
    v = np.array([1.0, value, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # no "overflow in cast" warning either
        with pytest.raises(ValueError, match=r"beyond the float(16|32) range.*allowed"):
            codec.encode(v)


@pytest.mark.parametrize("name, limit", [("fp16", 65520.0), ("fp32", 3.4028235677973366e38)])
def test_overflow_threshold_is_exact(name, limit):
    """Exactly the values that round to inf are refused; just below rounds to the max."""
    codec = plain(name)
    below = np.nextafter(limit, 0.0)
    top = float(np.finfo(codec._dtype).max)
    np.testing.assert_array_equal(codec.decode(codec.encode(np.array([below, -below]))),
                                  [top, -top])
    for value in (limit, -limit):
        with pytest.raises(ValueError, match="beyond"):
            codec.encode(np.array([value]))


def test_fp16_auto_scale_is_a_power_of_two_shift_of_the_plain_cast():
    """Scaled fp16 rounds every coordinate to 11 significant bits at any magnitude."""
    rng = np.random.default_rng(11)
    auto, none = get_codec("fp16"), get_codec("fp16", scale="none")
    for magnitude in (1e-30, 1e-9, 1.0, 1e4, 1e12, 1e150):
        v = rng.standard_normal(400) * magnitude
        out = auto.decode(auto.encode(v))
        e = math.frexp(np.max(np.abs(v)))[1] - 15
        np.testing.assert_array_equal(out, np.ldexp(none.decode(none.encode(np.ldexp(v, -e))), e))
        err = out - v
        assert err @ err <= auto.variance_bound(v.size) * (v @ v)
        assert np.count_nonzero(out) == np.count_nonzero(np.abs(v) > np.max(np.abs(v)) * 2.0 ** -40)


def test_fp16_auto_scale_puts_the_peak_at_the_top_of_the_half_range():
    """The header's power of two brings max|v| into [2**14, 2**15) (the largest
    binade below 65504's), so v_i down to max|v| 2**-28 stay normal halves: relative
    error <= 2**-11. One power of two less headroom would make them subnormal."""
    auto = get_codec("fp16")
    for peak in (1.0, 1.5, 1.999, 65504.0, 3e-9, 2.0 ** -40, 1e200):
        v = np.array([peak, -peak / 3, peak * 2.0 ** -28 * 1.2345])
        msg = auto.encode(v)
        assert 2 ** 14 <= peak * 2.0 ** -header_exponent(msg) < 2 ** 15
        out = auto.decode(msg)
        assert np.all(np.abs(out - v) <= 2.0 ** -11 * np.abs(v))


def test_fp16_auto_keeps_shrinking_gradients_that_the_plain_cast_flushes():
    v = np.array([3e-9, -1e-10, 2.5e-12])
    assert np.all(get_codec("fp16", scale="none").decode(get_codec("fp16", scale="none")
                                                         .encode(v)) == 0.0)
    out = get_codec("fp16").decode(get_codec("fp16").encode(v))
    np.testing.assert_allclose(out, v, rtol=2.0 ** -11)


def test_fp16_scale_is_in_the_config_and_checked():
    assert get_codec("fp16").get_config() == {"id": "fp16", "scale": "auto"}
    assert get_codec({"id": "fp16", "scale": "none"}) == FP16(scale="none")
    with pytest.raises(ValueError, match="scale"):
        FP16(scale="max")
    msg = FP16().encode(np.array([1e-9]))
    with pytest.raises(CodecError, match="exponent"):
        FP16(scale="none").decode(msg)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_raises(name, bad):
    v = np.ones(5)
    v[2] = bad
    codec = get_codec(name)
    for vec in (v, v.astype(np.float32)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ValueError, match="vec must be finite.*allowed"):
                codec.encode(vec)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("vec, match", [
    (np.zeros((2, 3)), r"1-D.*\(2, 3\)"),
    (np.float64(1.0), r"1-D.*\(\)"),
    (np.zeros(0), "between 1 and"),
    ([[1.0]], "1-D"),
    ("abc", "numeric"),
    (np.array([1 + 2j, 3]), "real"),
    (np.array(["1", "2"]), "numeric"),
    ([1.0, None], "numeric"),
])
def test_bad_vectors_raise(name, vec, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=match) as info:
            get_codec(name).encode(vec)
    assert "vec" in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_other_input_types_are_accepted(name):
    codec = get_codec(name)
    expected = codec.decode(codec.encode(np.array([1.0, -2.0, 3.0]), rng=np.random.default_rng(0)))
    for vec in ([1, -2, 3], (1.0, -2.0, 3.0), np.array([1, -2, 3], dtype=np.int8),
                np.array([1, -2, 3], dtype=np.float16), np.array([1, -2, 3], dtype=np.float32),
                np.array([9, 1.0, -2.0, 3.0])[1:], np.array([1.0, 7, -2.0, 7, 3.0])[::2]):
        out = codec.decode(codec.encode(vec, rng=np.random.default_rng(0)))
        np.testing.assert_array_equal(out, expected)


# --------------------------------------------------------------------------- QSGD: arguments
@pytest.mark.parametrize("kwargs, match", [
    ({"levels": 0}, r"levels must be an integer >= 1, got 0"),
    ({"levels": -3}, r"levels must be an integer >= 1"),
    ({"levels": 2.5}, r"levels must be an integer"),
    ({"levels": True}, r"levels must be an integer"),
    ({"levels": 2 ** 40}, r"levels must be an integer <="),
    ({"bucket_size": 0}, r"bucket_size must be an integer >= 1, got 0"),
    ({"bucket_size": -1}, r"bucket_size must be an integer >= 1"),
    ({"bucket_size": 4.0}, r"bucket_size must be an integer"),
    ({"norm": "l1"}, r"norm must be one of 'l2', 'max'; got 'l1'"),
    ({"norm": None}, r"norm must be one of"),
    ({"coding": "gamma"}, r"coding must be one of 'auto', 'elias', 'dense', 'ans'; got 'gamma'"),
    ({"seed": -1}, r"seed must be an integer >= 0"),
    ({"seed": 1.5}, r"seed must be an integer"),
])
def test_qsgd_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QSGD(**kwargs)
    with pytest.raises(ValueError, match=match):
        get_codec("qsgd", **kwargs)


def test_variance_bound_formula():
    for s in (1, 2, 4, 16, 255):
        for d in (1, 10, 1000, 10 ** 6):
            for norm in ("l2", "max"):
                assert QSGD(levels=s, norm=norm).variance_bound(d) == \
                    pytest.approx(min(d / (4 * s ** 2), math.sqrt(d) / s))
            b = min(7, d)
            assert QSGD(levels=s, bucket_size=7).variance_bound(d) == \
                pytest.approx(min(b / (4 * s ** 2), math.sqrt(b) / s))
    with pytest.raises(ValueError, match="d must be an integer >= 1"):
        QSGD().variance_bound(0)


# --------------------------------------------------------------------------- QSGD: statistics
STAT_CASES = [
    # levels, bucket_size, norm, coding
    (1, None, "l2", "auto"),
    (2, None, "l2", "elias"),
    (4, None, "max", "dense"),
    (16, None, "l2", "dense"),
    (3, 5, "l2", "auto"),            # 24 = 4 * 5 + a tail of 4
    (7, 10, "max", "elias"),
    (255, None, "l2", "auto"),
]


@pytest.mark.parametrize("levels, bucket_size, norm, coding", STAT_CASES)
def test_qsgd_is_unbiased_and_within_its_variance_bound(levels, bucket_size, norm, coding):
    codec = QSGD(levels=levels, bucket_size=bucket_size, norm=norm, coding=coding)
    v = sample_vector(24, seed=levels)
    n = 3000
    samples, _ = draw(codec, v, n, seed=11)
    var, p_nonzero = exact_moments(codec, v)
    # unbiased: every coordinate's mean is within 5 standard errors of v_i
    assert max_z(samples, v, var) < 5.0
    # ... and the squared norm of the mean error is near its expectation sum(var)/n
    err = samples.mean(axis=0) - v
    assert err @ err <= 3 * var.sum() / n + 1e-30
    # variance: the exact E||Q(v)-v||^2 is within the bound, the sample mean near it
    sq = ((samples - v) ** 2).sum(axis=1)
    bound = codec.variance_bound(v.size) * (v @ v)
    assert var.sum() <= bound * (1 + 1e-9)
    assert abs(sq.mean() - var.sum()) <= 5 * sq.std() / math.sqrt(n) + 1e-30
    # nonzeros: sample mean near the exact expectation
    nnz = (samples != 0).sum(axis=1)
    assert abs(nnz.mean() - p_nonzero.sum()) <= 5 * max(nnz.std(), 0.5) / math.sqrt(n)
    # every value is sign(v_i) * level * scale / s with an integer level in 0..s
    scales = bucket_scales(codec, v)
    lev = samples * levels / np.where(scales > 0, scales, 1.0)
    assert np.all(np.abs(lev - np.round(lev)) < 1e-6)
    assert np.all(np.abs(np.round(lev)) <= levels)
    assert np.all(samples * v >= 0)                    # never the opposite sign
    assert np.all(samples[:, v == 0] == 0)


@pytest.mark.parametrize("levels, d", [(1, 256), (4, 1024), (8, 1024), (16, 4096),
                                       (16, 1024)])
def test_variance_bound_is_nearly_attained_and_respected(levels, d):
    """Equal magnitudes are the worst case of the l2 bound: mean error close to it.
    (16, 1024) puts every ``s|v_i|/||v||`` at 1/2, where ``b/(4s^2)`` is attained."""
    codec = QSGD(levels=levels)
    signs = np.where(np.random.default_rng(d).random(d) < 0.5, -1.0, 1.0)
    v = signs * 0.37
    n = 400
    samples, _ = draw(codec, v, n, seed=d)
    sq = ((samples - v) ** 2).sum(axis=1)
    bound = codec.variance_bound(d) * (v @ v)
    var, _ = exact_moments(codec, v)
    assert var.sum() <= bound * (1 + 2 ** -22)        # the float32 scale rounds up
    assert var.sum() >= 0.5 * bound                   # the bound is not vacuous here
    if levels ** 2 * 4 == d:
        assert var.sum() == pytest.approx(bound, rel=1e-6)
    assert sq.mean() <= bound * (1 + 2 ** -22) + 5 * sq.std() / math.sqrt(n)
    assert abs(sq.mean() - var.sum()) <= 5 * sq.std() / math.sqrt(n)


@pytest.mark.parametrize("levels", [1, 2, 4, 8, 31])
@pytest.mark.parametrize("d", [100, 1000])
def test_expected_nonzeros_within_the_paper_bound(levels, d):
    codec = QSGD(levels=levels)
    rng = np.random.default_rng(levels * d)
    for v in (rng.standard_normal(d), np.full(d, -2.0), rng.standard_normal(d) ** 3):
        _, p_nonzero = exact_moments(codec, v)
        assert p_nonzero.sum() <= paper_nnz_bound(levels, d)
        samples, _ = draw(codec, v, 200, seed=levels)
        nnz = (samples != 0).sum(axis=1)
        assert nnz.mean() <= paper_nnz_bound(levels, d) + 5 * nnz.std() / math.sqrt(200) + 1e-9
        assert abs(nnz.mean() - p_nonzero.sum()) <= 5 * max(nnz.std(), 0.5) / math.sqrt(200)


def test_statistics_catch_a_biased_quantizer():
    """Negative control: round-to-nearest (u = 1/2 always) is biased and low-variance."""

    class Half:
        def random(self, size=None, dtype=np.float64, out=None):
            if out is not None:
                out[...] = 0.5
                return out
            return np.full(size, 0.5, dtype=dtype)

    codec = QSGD(levels=2)
    v = sample_vector(24, seed=2)
    samples = np.array([codec.decode(codec.encode(v, rng=Half())) for _ in range(500)])
    var, _ = exact_moments(codec, v)
    with pytest.raises(AssertionError):
        assert max_z(samples, v, var) < 5.0


def test_bucket_variance_bound_holds_per_bucket():
    """Buckets of very different norms: the bound uses b, each bucket its own scale."""
    codec = QSGD(levels=2, bucket_size=8)
    v = np.concatenate([np.full(8, 1000.0), np.full(8, -1e-3), np.linspace(-1, 1, 8), [3e-6, 5.0]])
    samples, _ = draw(codec, v, 2000, seed=3)
    var, _ = exact_moments(codec, v)
    assert max_z(samples, v, var) < 5.0
    for start in range(0, v.size, 8):                     # each bucket separately
        part = slice(start, start + 8)
        sq = ((samples[:, part] - v[part]) ** 2).sum(axis=1)
        b = v[part].size
        bound = min(b / 4, math.sqrt(b) / 2) * (v[part] @ v[part])
        assert sq.mean() <= bound + 5 * sq.std() / math.sqrt(2000) + 1e-300


# --------------------------------------------------------------------------- QSGD: bits
@pytest.mark.parametrize("d", [100, 1000, 10000])
def test_elias_bits_within_the_paper_bound(d):
    rng = np.random.default_rng(d)
    v = rng.standard_normal(d)
    for s in sorted({1, 2, 4, 16, int(math.isqrt(d))}):
        _, sizes = draw(QSGD(levels=s, coding="elias"), v, 20, seed=s)
        payload_bits = 8 * (sizes - QSGD_START)             # the scale, count and stream
        assert payload_bits.mean() <= paper_bits_bound(s, d), (s, d)
        fp32_bits = 8 * len(get_codec("fp32").encode(v))
        if d >= 1000:
            assert sizes.max() * 8 < fp32_bits / 8          # > 8x fewer bits than fp32
        elif s <= 4:
            assert sizes.max() * 8 < fp32_bits / 2


def test_sqrt_d_levels_use_under_the_papers_bits():
    """QSGD's sharper analysis for s = sqrt(d): at most about 2.8 d + 32 bits."""
    d = 4096
    v = np.random.default_rng(0).standard_normal(d)
    codec = QSGD(levels=64, coding="elias")
    _, sizes = draw(codec, v, 10, seed=0)
    per_coord = 8 * (sizes.mean() - QSGD_START) / d
    assert per_coord < 2.8
    assert codec.encode(v)[CODING_AT] == 3                       # gamma-coded gaps won here
    assert per_coord < paper_bits_bound(64, d) / d / 2   # the general formula: ~9 bits


@pytest.mark.parametrize("levels, width", [(1, 2), (2, 3), (3, 3), (4, 4), (7, 4), (8, 5),
                                           (16, 6), (255, 9), (256, 10), (1000, 11),
                                           (65535, 17), (2 ** 31 - 1, 32)])
def test_dense_message_size_is_exact(levels, width):
    for d, bucket in ((1, None), (37, None), (37, 10), (1000, 64)):
        codec = QSGD(levels=levels, bucket_size=bucket, coding="dense")
        msg = codec.encode(sample_vector(d, seed=d), rng=np.random.default_rng(0))
        nb = 1 if bucket is None else -(-d // bucket)
        assert len(msg) == QSGD_START + 4 * nb + -(-d * width // 8), (levels, d, bucket)


# --------------------------------------------------------------------------- QSGD: exactness
QUANT_CASES = [
    dict(levels=1), dict(levels=2, norm="max"), dict(levels=16, bucket_size=7),
    dict(levels=255, coding="dense"), dict(levels=300, bucket_size=3, norm="max"),
    dict(levels=70000, coding="dense"), dict(levels=2 ** 31 - 1, coding="elias"),
    dict(levels=2 ** 31 - 1, bucket_size=4, coding="dense"), dict(levels=5, bucket_size=1),
    dict(levels=300, bucket_size=3, coding="ans"), dict(levels=2 ** 31 - 1, coding="ans"),
]


@pytest.mark.parametrize("kwargs", QUANT_CASES)
def test_decode_is_exactly_the_dequantized_levels(kwargs):
    codec = QSGD(**kwargs)
    for d, seed in ((1, 0), (2, 1), (23, 2), (300, 3)):
        v = sample_vector(d, seed) if d > 1 else np.array([-0.3])
        for dtype in (np.float64, np.float32):
            vv = v.astype(dtype)
            scales, levels = codec.quantize(vv, rng=np.random.default_rng(seed))
            assert scales.dtype == np.float64 and levels.dtype.kind == "i"
            assert np.all(scales.astype(np.float32) == scales)   # float32 * 2**e, here e ~ 0
            assert np.all(np.abs(levels) <= codec.levels)
            assert np.all(levels[vv == 0] == 0) and np.all(levels * vv >= 0)
            expected = codec.dequantize(scales, levels)
            out = codec.decode(codec.encode(vv, rng=np.random.default_rng(seed)))
            assert out.dtype == np.float64 and out.shape == (d,)
            np.testing.assert_array_equal(out, expected)


def test_codings_decode_identically_and_auto_picks_the_shortest():
    """auto writes the shortest of Elias and dense, and rANS where it tries it (at least
    1 coordinate in 16 nonzero) and it is shorter still."""
    picked = set()
    codings = ("elias", "dense", "ans", "auto")
    for d in (1, 5, 64, 1000, 5000):
        for s in (1, 3, 16, 255, 4096):
            for bucket in (None, 16):
                v = sample_vector(d, seed=d + s)
                kw = dict(levels=s, bucket_size=bucket)
                msgs = {c: QSGD(coding=c, **kw).encode(v, rng=np.random.default_rng(s))
                        for c in codings}
                outs = {c: QSGD(coding=c, **kw).decode(m) for c, m in msgs.items()}
                for c in codings:
                    np.testing.assert_array_equal(outs[c], outs["dense"])
                chosen = "elias" if len(msgs["elias"]) < len(msgs["dense"]) else "dense"
                nonzero = np.count_nonzero(QSGD(**kw).quantize(v, np.random.default_rng(s))[1])
                if 16 * nonzero >= d and len(msgs["ans"]) < len(msgs[chosen]):
                    chosen = "ans"
                assert msgs["auto"] == msgs[chosen]
                picked.add(chosen)
                # a message decodes with any QSGD of the same quantizer, whatever its coding
                for m in msgs.values():
                    np.testing.assert_array_equal(QSGD(coding="elias", **kw).decode(m),
                                                  outs["dense"])
    assert picked == {"elias", "dense", "ans"}


@pytest.mark.parametrize("kwargs", QUANT_CASES + [dict(levels=4, coding="dense"),
                                                   dict(levels=4, coding="ans")])
def test_zero_vector(kwargs):
    codec = QSGD(**kwargs)
    for d in (1, 10, 1000):
        msg = codec.encode(np.zeros(d))
        np.testing.assert_array_equal(codec.decode(msg), np.zeros(d))
        if codec.coding in ("auto", "elias"):
            nb = 1 if codec.bucket_size is None else -(-d // codec.bucket_size)
            assert len(msg) == QSGD_START + 4 * nb + 1
    for name in ("fp64", "fp32", "fp16"):
        c = get_codec(name)
        np.testing.assert_array_equal(c.decode(c.encode(np.zeros(7))), np.zeros(7))


def test_single_coordinate():
    for s in (1, 2, 16):
        for x in (0.75, -3.0, 1e-30, -1e30):
            codec = QSGD(levels=s, seed=0)
            x32 = np.array([x], dtype=np.float32)
            # the scale is |x| itself (exact in float32): Q(x) = x always
            np.testing.assert_array_equal(codec.decode(codec.encode(x32)), x32.astype(np.float64))
            out = codec.decode(codec.encode(np.array([x + x * 1e-12])))
            assert out[0] * x > 0 and abs(out[0] - x) <= abs(x) * 1.01 / s


def test_bucket_tails_and_large_buckets():
    v = np.concatenate([np.full(4, 100.0), np.full(4, -0.01), [1e-5, 2e-5]])   # d = 10
    for coding in ("elias", "dense"):
        codec = QSGD(levels=1000, bucket_size=4, coding=coding)
        msg = codec.encode(v, rng=np.random.default_rng(0))
        scales = np.ldexp(np.frombuffer(msg[QSGD_START:QSGD_START + 12], dtype="<f4")
                          .astype(np.float64), header_exponent(msg))
        np.testing.assert_allclose(scales, [200.0, 0.02, math.sqrt(5) * 1e-5], rtol=1e-7)
        assert np.all(scales >= [200.0, 0.02, math.sqrt(5) * 1e-5])          # rounded up
        out = codec.decode(msg)
        # each bucket is quantized on its own scale: every coordinate within scale / s
        for part, scale in ((slice(0, 4), 200.0), (slice(4, 8), 0.02), (slice(8, 10), 2.3e-5)):
            assert np.all(np.abs(out[part] - v[part]) <= scale / 1000 * 1.001)
    v = sample_vector(10)
    for bucket in (10, 11, 10 ** 6):        # a bucket at least d long is one bucket
        one = QSGD(levels=3, bucket_size=bucket).encode(v, rng=np.random.default_rng(1))
        whole = QSGD(levels=3).encode(v, rng=np.random.default_rng(1))
        assert len(one) == len(whole) and one[HEADER_SIZE + 8:] == whole[HEADER_SIZE + 8:]
        np.testing.assert_array_equal(QSGD(levels=3, bucket_size=bucket).decode(one),
                                      QSGD(levels=3).decode(whole))
    codec = QSGD(levels=1, bucket_size=1)             # bucket 1: Q(v) = v for float32 input
    v32 = sample_vector(50).astype(np.float32)
    np.testing.assert_array_equal(codec.decode(codec.encode(v32)), v32.astype(np.float64))


def test_extreme_magnitudes():
    """Tiny and huge vectors keep their precision (the scale exponent) and stay unbiased."""
    rng = np.random.default_rng(0)
    base = np.array([1.0, -0.3, 0.0, 2.5, 0.01])
    for codec in (QSGD(levels=4), QSGD(levels=4, norm="max"), QSGD(levels=4, bucket_size=2)):
        for k in (-1000, -700, -300, 300, 700, 1000):
            v = np.ldexp(base * rng.uniform(0.5, 1.5, base.size), k)
            unit = -int(np.frexp(np.abs(v).max())[1])        # work in units of ~max|v|
            samples, _ = draw(codec, v, 250, seed=k % 97)
            assert np.all(np.isfinite(samples))
            var, _ = exact_moments(codec, v, unit)
            assert max_z(np.ldexp(samples, unit), np.ldexp(v, unit), var) < 5.0
            c = bucket_scales(codec, v)                    # full float32 precision
            vu = np.ldexp(v, unit)
            stat = (np.repeat(np.sqrt(np.add.reduceat(vu ** 2, np.arange(0, 5, 2))), 2)[:5]
                    if codec.bucket_size else
                    np.linalg.norm(vu) if codec.norm == "l2" else np.abs(vu).max())
            ratio = np.ldexp(c, unit) / stat
            assert np.all((ratio >= 1) & (ratio <= 1 + 2.0 ** -23)), (k, ratio)
    # subnormal float64 inputs: the quantized values carry subnormal rounding, so only
    # approximately unbiased
    for v in (np.ldexp(base, -1060), np.array([1e-320, -5e-324]), np.array([5e-324])):
        samples, _ = draw(QSGD(levels=2), v, 400, seed=1)
        assert np.all(np.isfinite(samples)) and np.all(samples * v >= 0)
        assert np.abs(samples.mean(axis=0) - v).max() <= 0.2 * np.abs(v).max()
    big = np.finfo(np.float64).max
    with pytest.raises(ValueError, match="beyond the float64 range"):
        QSGD(levels=4).encode(np.full(5, big / 2))    # l2 norm overflows
    with pytest.raises(ValueError, match="float64 maximum"):
        QSGD(levels=4, norm="max").encode(np.array([big, 1.0]))
    QSGD(levels=4, norm="max").encode(np.array([big / 2, -big / 2]))  # fine


# --------------------------------------------------------------------------- seeds
def test_seeds_give_reproducible_fresh_draws():
    v = sample_vector(200)
    a, b, c = QSGD(levels=2, seed=7), QSGD(levels=2, seed=7), QSGD(levels=2, seed=8)
    seq_a = [a.encode(v) for _ in range(3)]
    seq_b = [b.encode(v) for _ in range(3)]
    seq_c = [c.encode(v) for _ in range(3)]
    assert seq_a == seq_b                              # same seed -> same bytes
    assert len(set(seq_a)) == 3                        # each encode draws afresh
    assert all(x != y for x, y in zip(seq_a, seq_c))   # another seed -> other bytes
    # an explicit rng decides alone and leaves the codec's own stream untouched
    fresh = QSGD(levels=2, seed=7)
    explicit = [fresh.encode(v, rng=np.random.default_rng(3)) for _ in range(2)]
    assert explicit[0] == explicit[1] == QSGD(levels=2, seed=99).encode(v, rng=np.random.default_rng(3))
    assert fresh.encode(v) == seq_a[0]
    # unseeded codecs draw from OS entropy
    assert QSGD(levels=2).encode(v) != QSGD(levels=2).encode(v)


def test_exact_codecs_ignore_the_rng():
    v = sample_vector(30)
    for name in ("fp64", "fp32", "fp16"):
        codec = get_codec(name)
        assert codec.encode(v) == codec.encode(v, rng=np.random.default_rng(1))


# --------------------------------------------------------------------------- malformed bytes
def small_messages() -> list[tuple[Codec, bytes]]:
    v = sample_vector(13, seed=5)
    out = [(get_codec(n), get_codec(n).encode(v)) for n in ("fp64", "fp32", "fp16")]
    for kw in (dict(levels=3, coding="elias"), dict(levels=3, coding="dense"),
               dict(levels=300, bucket_size=4, norm="max", coding="elias"),
               dict(levels=70000, bucket_size=5, coding="dense"),
               dict(levels=1, coding="elias"), dict(levels=4, coding="ans"),
               dict(levels=70000, bucket_size=5, coding="ans")):
        codec = QSGD(**kw)
        out.append((codec, codec.encode(v, rng=np.random.default_rng(1))))
    return out


def assert_codec_error_or_valid(codec: Codec, msg: bytes) -> None:
    try:
        out = codec.decode(msg, max_dim=2 ** 20)
    except CodecError as exc:
        assert str(exc)
        return
    assert out.dtype == np.float64 and out.ndim == 1 and np.all(np.isfinite(out))
    assert out.size == struct.unpack_from("<Q", msg, 13)[0]


def assert_payload_check_rejects(codec: Codec, msg: bytes) -> None:
    """``msg`` has a consistent header, so the codec's payload parser must object."""
    with pytest.raises(CodecError) as caught:
        codec.decode(msg)
    assert "header announces" not in str(caught.value), caught.value


def test_every_truncation_and_extension_is_rejected():
    for codec, msg in small_messages():
        codec.decode(msg)                                # the intact message is fine
        for n in range(len(msg)):
            with pytest.raises(CodecError):
                codec.decode(msg[:n])
            if n >= HEADER_SIZE:                     # also with a consistent header
                assert_payload_check_rejects(codec, with_payload_len(msg[:n]))
        for extra in (b"\0", b"\x01", b"\0" * 9):
            with pytest.raises(CodecError, match="trailing"):
                codec.decode(msg + extra)
            assert_payload_check_rejects(codec, with_payload_len(msg + extra))


def test_header_corruption_is_rejected():
    for codec, msg in small_messages():
        # d (bytes 13-20) may stay valid for sparse bodies; the scale exponent of a qsgd
        # or scaled fp16 message is a parameter like the scales themselves. The rest of
        # the header and of the qsgd parameter block must be rejected when changed.
        scaled = isinstance(codec, QSGD) or getattr(codec, "scale", "none") == "auto"
        at = EXPONENT_AT.get(codec.codec_id)
        free = set(range(13, 21)) | ({at, at + 1} if scaled else set())
        checked = QSGD_START if isinstance(codec, QSGD) else \
            HEADER_SIZE + 2 if codec.codec_id == "fp16" else HEADER_SIZE
        for pos in range(checked):
            if pos in free:
                continue
            for xor in (0x01, 0x80, 0xFF):
                bad = bytearray(msg)
                bad[pos] ^= xor
                with pytest.raises(CodecError):
                    codec.decode(bytes(bad))
        for pos in sorted(free):
            for xor in (0x01, 0x80, 0xFF):
                bad = bytearray(msg)
                bad[pos] ^= xor
                assert_codec_error_or_valid(codec, bytes(bad))


def test_random_payload_flips_never_crash():
    rng = np.random.default_rng(0)
    for codec, msg in small_messages():
        for _ in range(200):
            bad = bytearray(msg)
            for pos in rng.integers(HEADER_SIZE, len(msg), size=rng.integers(1, 4)):
                bad[pos] ^= int(rng.integers(1, 256))
            assert_codec_error_or_valid(codec, bytes(bad))


@pytest.mark.parametrize("fields, match", [
    (dict(magic=b"RRLD"), "magic"),
    (dict(magic=b"\0\0\0\0"), "magic"),
    (dict(version=1), "version 1"),
    (dict(version=2), "version 2"),
    (dict(version=3), "version 3"),
    (dict(version=5), "version 5"),
    (dict(version=0), "version 0"),
    (dict(codec_id=b"fp32"), "'fp32'"),
    (dict(codec_id=b"\xffqsgd"), "codec id"),
    (dict(codec_id=b""), "codec id"),
    (dict(codec_id=b"qs\0gd"), "codec id"),
    (dict(exponent=-926), "exponent -926 out of range"),
    (dict(exponent=961), "exponent 961 out of range"),
    (dict(exponent=-32768), "exponent"),
    (dict(d=0), "d=0"),
    (dict(d=MAX_DIM + 1), "impossible dimension"),
    (dict(d=2 ** 64 - 1), "impossible dimension"),
    (dict(norm=7), r"norm code 7; allowed: 1 \(l2\), 2 \(max\)"),
    (dict(coding=9), r"coding code 9; allowed: 1 \(elias\), 2 \(dense\), 3 \(elias-gamma\), 4 \(ans\)"),
    (dict(norm=0), "norm code 0"),
    (dict(coding=0), "coding code 0"),
    (dict(levels=0), "levels=0 in the message; allowed: >= 1"),
    (dict(levels=5), "levels=5"),
    (dict(bucket=3), "bucket_size=3"),
    (dict(norm=2), "norm='max'"),
    (dict(payload_len=2 ** 64 - 1), "truncated"),
    (dict(payload_len=2 ** 40), "truncated"),
    (dict(payload_len=1), "trailing bytes"),
])
def test_hostile_qsgd_headers(fields, match):
    codec = QSGD(levels=4)
    body = np.float32(1.0).tobytes() + b"\x80"                    # count 0: delta(1) = "1"
    codec.decode(qsgd_message(body))                             # valid as it stands
    with pytest.raises(CodecError, match=match):
        codec.decode(qsgd_message(body, **fields))


def test_a_payload_too_short_for_the_parameter_block_is_named():
    for n in range(QSGD_FMT.size):
        with pytest.raises(CodecError, match="cannot hold the 12-byte qsgd parameter block"):
            QSGD(levels=4).decode(raw_header(payload_len=n) + bytes(n))
    for n in range(2):
        with pytest.raises(CodecError, match="cannot hold the 2-byte scale exponent"):
            FP16().decode(raw_header(codec_id=b"fp16", d=1, payload_len=n) + bytes(n))


def test_wrong_codec_is_named():
    v = sample_vector(9)
    q = QSGD(levels=4).encode(v)
    for name in ("fp32", "fp64", "fp16"):
        with pytest.raises(CodecError, match=rf"encoded by codec 'qsgd'.*'{name}'"):
            get_codec(name).decode(q)
        with pytest.raises(CodecError, match=rf"encoded by codec '{name}'.*'qsgd'"):
            QSGD(levels=4).decode(get_codec(name).encode(v))
    with pytest.raises(CodecError, match="'fp64'.*'fp32'"):
        get_codec("fp32").decode(get_codec("fp64").encode(v))
    with pytest.raises(CodecError, match=r"levels=4.*levels=5"):
        QSGD(levels=5).decode(q)


def raw_message(name: str, d: int, payload: bytes) -> bytes:
    return raw_header(codec_id=name.encode(), d=d, payload_len=len(payload)) + payload


def test_raw_codec_payloads_are_checked():
    v = np.ones(4)
    for name, size, block in (("fp64", 8, 0), ("fp32", 4, 0), ("fp16", 2, 2)):
        codec = plain(name)
        msg = codec.encode(v)
        assert len(msg) == HEADER_SIZE + block + size * 4          # the block, then values
        payload = msg[HEADER_SIZE:]
        for d in (3, 5, MAX_DIM):                        # payload size must match d
            with pytest.raises(CodecError, match=f"d={d} must be {d * size} bytes"):
                codec.decode(raw_message(name, d, payload))
        for extra in (b"\0\0", b"\0" * size):      # e.g. an fp16 block fed to fp32
            with pytest.raises(CodecError, match=f"must be {4 * size} bytes"):
                codec.decode(raw_message(name, 4, payload + extra))
    for name, bits, block in (("fp64", np.float64, b""), ("fp32", np.float32, b""),
                              ("fp16", np.float16, b"\0\0")):
        payload = block + np.array([1.0, np.nan], dtype=bits).tobytes()
        with pytest.raises(CodecError, match="NaN or inf"):
            get_codec(name).decode(raw_message(name, 2, payload))
    # fp16 opens its payload with its power of two: int16, little-endian
    halves = np.ones(4, dtype=np.float16).tobytes()
    ok = raw_message("fp16", 4, struct.pack("<h", -3) + halves)
    np.testing.assert_array_equal(get_codec("fp16").decode(ok), np.full(4, 0.125))
    with pytest.raises(CodecError, match=r"exponent -3 is not allowed; allowed: 0 "):
        FP16(scale="none").decode(ok)
    for e in (1101, -1101, 32767):
        with pytest.raises(CodecError, match=rf"exponent {e} is not allowed; allowed: "
                                             r"-1100\.\.1100"):
            FP16().decode(raw_message("fp16", 4, struct.pack("<h", e) + halves))


def sparse_message(count: int, stream: str, d: int = 8, scale: float = 1.0) -> bytes:
    """A qsgd (levels=4, l2, elias) message with a hand-written bit stream after the
    count (written as delta(count + 1))."""
    stream = delta_bits(count + 1) + stream
    stream = stream + "0" * (-len(stream) % 8)
    body = (np.float32(scale).tobytes()
            + bytes(int(stream[i:i + 8], 2) for i in range(0, len(stream), 8)))
    return qsgd_message(body, d=d)


def test_hand_written_elias_streams():
    codec = QSGD(levels=4)
    # one nonzero at position 2 (gap 3: L=1, gamma(2)="010", tail "1"), level 3
    # (gamma(3) = "011"), negative. Sections: unary "01" "01", tails "0" "1",
    # sign "1", gap low bits "1".
    ok = sparse_message(1, "0101" + "01" + "1" + "1")
    np.testing.assert_array_equal(codec.decode(ok), [0, 0, -0.75, 0, 0, 0, 0, 0])
    # gap 1 (gamma(1) = "1", no low bits), level 1 ("1"), positive
    np.testing.assert_array_equal(codec.decode(sparse_message(1, "110")), [0.25] + [0] * 7)
    # coding 3 (elias-gamma): the gap is gamma(3) = "011" itself, no fourth section
    gamma_gaps = bytearray(sparse_message(1, "0101" + "11" + "1"))
    gamma_gaps[CODING_AT] = 3
    np.testing.assert_array_equal(codec.decode(bytes(gamma_gaps)), [0, 0, -0.75, 0, 0, 0, 0, 0])
    with pytest.raises(CodecError, match="trailing|padding|ran out"):
        codec.decode(bytes(ok[:CODING_AT]) + b"\x03" + ok[CODING_AT + 1:])     # a delta stream read as gamma
    cases = {
        "nonzeros, impossible": sparse_message(2 ** 32 - 1, "1"),
        "nonzeros, impossible for d": sparse_message(9, "1" * 64),
        "ran out": sparse_message(1, "0000000000000000"),      # no codeword ends
        "-bit tail": sparse_message(1, "0" * 40 + "1" + "1" + "0" * 60),
        "exceeds levels": sparse_message(1, "01001" + "001" + "1" + "1"),   # level 5
        "past d": sparse_message(1, "0101" + "01" + "1" + "1", d=2),        # gap 3 in d=2
        "padding": sparse_message(1, "11" + "0" + "1"),     # "110" is a valid stream
        "trailing bytes": sparse_message(1, "0101" + "01" + "1" + "1" + "0" * 8),
        "scales must be finite": sparse_message(1, "0101" + "01" + "1" + "1", scale=np.inf),
        "scales must be finite and >= 0": sparse_message(1, "0101" + "01" + "1" + "1",
                                                         scale=-1.0),
    }
    for match, msg in cases.items():
        with pytest.raises(CodecError, match=match):
            codec.decode(msg)
    nan_scale = sparse_message(1, "0101" + "01" + "1" + "1", scale=np.nan)
    with pytest.raises(CodecError, match="finite"):
        codec.decode(nan_scale)
    too_short = qsgd_message(b"\0\0\0")
    with pytest.raises(CodecError, match="scales"):
        codec.decode(too_short)
    for bad_count in (b"", b"\0\0", b"\0" * 9, b"\x04"):   # missing, no one, too long
        msg = qsgd_message(np.float32(1).tobytes() + bad_count)
        with pytest.raises(CodecError, match="count"):
            codec.decode(msg)
    np.testing.assert_array_equal(codec.decode(sparse_message(0, "")), np.zeros(8))
    for extra in ("1", "0" * 8):                             # after an empty stream
        with pytest.raises(CodecError, match="trailing"):
            codec.decode(sparse_message(0, extra))


def test_hand_written_dense_bodies():
    codec = QSGD(levels=4)                                  # 4 bits: sign + 3 level bits
    def msg(codes):
        return qsgd_message(np.float32(2.0).tobytes() + bytes(codes), d=3, coding=2)

    np.testing.assert_array_equal(codec.decode(msg([0x1C, 0x00])), [0.5, -2.0, 0.0])
    with pytest.raises(CodecError, match="exceeds levels"):
        codec.decode(msg([0x50, 0x00]))                      # level 5
    with pytest.raises(CodecError, match="negative zero"):
        codec.decode(msg([0x80, 0x00]))
    with pytest.raises(CodecError, match="padding"):
        codec.decode(msg([0x10, 0x01]))
    with pytest.raises(CodecError, match="must be 2 bytes"):
        codec.decode(qsgd_message(np.float32(2).tobytes() + b"\0\0\0", d=3, coding=2))


def test_buffer_types():
    codec = QSGD(levels=4, bucket_size=3)
    v = sample_vector(10)
    msg = codec.encode(v, rng=np.random.default_rng(0))
    expected = codec.decode(msg)
    arr = np.frombuffer(msg, dtype=np.uint8)
    strided = np.zeros(2 * len(msg), dtype=np.uint8)
    strided[::2] = arr
    for buf in (bytearray(msg), memoryview(msg), arr, arr.copy(), strided[::2],
                np.frombuffer(b"x" + msg, dtype=np.uint8)[1:]):
        np.testing.assert_array_equal(codec.decode(buf), expected)
    for bad in ("text", 5, None, [1, 2], np.zeros((2, 41), dtype=np.uint8),
                np.zeros(50, dtype=np.int16)):
        with pytest.raises(CodecError):
            codec.decode(bad)


def test_max_dim_rejects_large_announced_vectors_before_allocating():
    codec = QSGD(levels=4)
    body = np.float32(1.0).tobytes() + b"\x80"                    # count 0: delta(1) = "1"
    hostile = qsgd_message(body, d=MAX_DIM)                        # a valid empty message
    with pytest.raises(CodecError, match="max_dim"):
        codec.decode(hostile, max_dim=10 ** 6)
    v = sample_vector(100)
    for name in NAMES:
        c = get_codec(name)
        msg = c.encode(v)
        assert c.decode(msg, max_dim=100).shape == (100,)
        with pytest.raises(CodecError, match="max_dim=99"):
            c.decode(msg, max_dim=99)
        with pytest.raises(ValueError, match="max_dim"):
            c.decode(msg, max_dim=0)


# --------------------------------------------------------------------------- bit coding
def gamma_bits(n: int) -> str:
    """Elias gamma, written out the textbook way."""
    b = bin(n)[2:]
    return "0" * (len(b) - 1) + b


def delta_bits(n: int) -> str:
    b = bin(n)[2:]
    return gamma_bits(len(b)) + b[1:]


def omega_bits(n: int) -> str:
    out = "0"
    while n > 1:
        b = bin(n)[2:]
        out = b + out
        n = len(b) - 1
    return out


def test_elias_code_lengths_match_the_textbook_codes():
    from ray_relu.codecs.bitcoding import bit_length, delta_length, gamma_length, omega_length
    ns = np.array(sorted({*range(1, 300), *(2 ** k + j for k in range(9, 40) for j in (-1, 0, 1))}))
    assert list(bit_length(ns)) == [int(n).bit_length() for n in ns]
    assert list(gamma_length(ns)) == [len(gamma_bits(int(n))) for n in ns]
    assert list(delta_length(ns)) == [len(delta_bits(int(n))) for n in ns]
    assert list(omega_length(ns)) == [len(omega_bits(int(n))) for n in ns]


@pytest.mark.parametrize("levels, d, gap_code", [(1, 5000, 1), (16, 300, 3)])
def test_elias_stream_is_the_textbook_code_regrouped(levels, d, gap_code):
    """The sparse body's bits are exactly the gamma/delta codewords, split in sections."""
    codec = QSGD(levels=levels, coding="elias")
    v = sample_vector(d, seed=9)
    msg = codec.encode(v, rng=np.random.default_rng(4))
    _, levels = codec.quantize(v, rng=np.random.default_rng(4))
    idx = np.flatnonzero(levels)
    gaps = np.diff(idx, prepend=-1)
    assert msg[CODING_AT] == gap_code                  # 1: delta-coded gaps, 3: gamma-coded
    gamma_gaps = msg[CODING_AT] == 3
    gap_words = [gamma_bits(int(g)) if gamma_gaps else delta_bits(int(g)) for g in gaps]
    level_words = [gamma_bits(int(abs(l))) for l in levels[idx]]
    words = []                            # the 2k gamma codewords, in order
    for g, gw, lw in zip(gaps, gap_words, level_words):
        words += [gw if gamma_gaps else gamma_bits(int(g).bit_length()), lw]
    unary = "".join(w[:len(w) // 2 + 1] for w in words)
    tails = "".join(w[len(w) // 2 + 1:] for w in words)
    signs = "".join("1" if l < 0 else "0" for l in levels[idx])
    lows = "" if gamma_gaps else "".join(bin(int(g))[3:] for g in gaps)
    stream = delta_bits(idx.size + 1) + unary + tails + signs + lows
    assert len(stream) == (len(delta_bits(idx.size + 1)) + sum(map(len, gap_words))
                           + sum(map(len, level_words)) + len(signs))
    bits = "".join(f"{b:08b}" for b in msg[QSGD_START + 4:])
    assert bits == stream + "0" * (-len(stream) % 8)


def test_max_norm_scale_is_the_largest_magnitude_even_when_negative():
    """norm='max': each bucket's scale is max |v_i|, also when that entry is negative
    (a scale from the largest signed value would put levels beyond s)."""
    codec = QSGD(levels=4, norm="max", bucket_size=4)
    v = np.array([0.1, -3.0, 0.2, 0.5, -0.25, 0.1, 2.0, -7.0])
    scales, levels = codec.quantize(v, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(scales, [3.0, 7.0])
    assert levels[1] == -4 and levels[7] == -4 and np.abs(levels).max() <= 4
    decoded = codec.decode(codec.encode(v, rng=np.random.default_rng(0)))
    assert decoded[1] == -3.0 and decoded[7] == -7.0


def test_short_dense_body_is_named_in_the_error():
    """A dense body one byte short (header fixed up to match) is rejected up front with
    a message that says what size was expected, not by the bit reader running dry."""
    codec = QSGD(levels=255, coding="dense")
    msg = codec.encode(sample_vector(40), rng=np.random.default_rng(0))
    with pytest.raises(CodecError, match=r"dense qsgd body .* must be \d+ bytes, got"):
        codec.decode(with_payload_len(msg[:-1]))
