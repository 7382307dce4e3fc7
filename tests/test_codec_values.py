"""Codecs as values: a codec written here, never registered, fitted on Ray.

The user's side of the contract is ``codec_id``, ``encode`` and ``decode``; config,
equality, repr and the variance fallback come from :class:`Codec`. The codec object
itself travels to the actors, so the Ray engine must compute what the single-process
reference computes with it, in both modes.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import ray.cloudpickle

from ray_relu import fit
from ray_relu.codecs import QSGD, Codec, CodecError, available_codecs, get_codec
from ray_relu.codecs import registry
from ray_relu.models import PlantedReLU, ReLU
from ray_relu.reference import sgd
from ray_relu.settings import UNKNOWN_VARIANCE, resolve

# This module is imported by pytest, not installed: Ray's workers could not import it,
# so its classes travel by value (what a script's or a notebook's classes do anyway).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

MODES = ("master", "all-to-all")


class Halves(Codec):
    """The minimal codec: an id, encode and decode; 2 bytes a coordinate, no header."""

    codec_id = "halves"

    def encode(self, vec, rng=None):
        return np.asarray(vec, dtype="<f2").tobytes()

    def decode(self, buf, max_dim=None):
        return np.frombuffer(buf, dtype="<f2").astype(np.float64)


class Dither(Codec):
    """Stochastic rounding to multiples of ``step`` (unbiased), levels as int32.

    Written the way the contract asks: the constructor argument is stored under its
    own name, and all randomness comes from ``rng``.
    """

    codec_id = "dither"

    def __init__(self, step: float = 1e-3) -> None:
        self.step = step

    def encode(self, vec, rng=None):
        rng = np.random.default_rng() if rng is None else rng
        x = np.asarray(vec, dtype=np.float64) / self.step
        return np.floor(x + rng.random(x.size)).astype("<i4").tobytes()

    def decode(self, buf, max_dim=None):
        return np.frombuffer(buf, dtype="<i4") * self.step


class FramedHalves(Halves):
    """Halves inside the shared frame: a self-describing message."""

    codec_id = "fhalves"

    def encode(self, vec, rng=None):
        v = np.asarray(vec)
        return self.pack_message(v.size, super().encode(v))

    def decode(self, buf, max_dim=None):
        d, payload = self.read_message(buf, max_dim)
        if payload.size != 2 * d:
            raise CodecError(f"fhalves payload for d={d} must be {2 * d} bytes, "
                             f"got {payload.size}")
        return super().decode(payload.tobytes())


def run_options(codec: Codec) -> dict:
    return dict(codec=codec, workers=3, batch_size=30, iterations=15, tol=0.0, seed=4,
                step_size=0.3)


# ---- on Ray, in both modes ------------------------------------------------------------

@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("codec", [Halves(), Dither(step=1e-3)], ids=repr)
def test_a_user_codec_on_ray_equals_the_reference_in_both_modes(codec):
    assert codec.codec_id not in available_codecs()          # never registered
    problem = PlantedReLU(d=6, n=120, seed=3)
    ref = sgd(problem, **run_options(codec))
    runs = {mode: fit(problem, mode=mode, progress=False, **run_options(codec))
            for mode in MODES}
    for mode, result in runs.items():
        for name in ("loss", "rel_error"):
            np.testing.assert_allclose(result.history.column(name).to_numpy(),
                                       ref.history.column(name).to_numpy(), rtol=1e-12,
                                       err_msg=f"{mode}: {name}")
        np.testing.assert_allclose(result.w, ref.iterates[-1], rtol=1e-12, atol=1e-15)
        assert result.config["codec"] == codec.get_config()
        assert result.iterations == 15
    # the messages are the codec's own bytes: no header, 2 or 4 bytes a coordinate
    per_coordinate = 2 if isinstance(codec, Halves) else 4
    up = np.asarray(runs["master"].history.column("bytes_up"))
    assert np.all(up[1:] == 3 * 6 * per_coordinate)
    peer = np.asarray(runs["all-to-all"].history.column("bytes_peer"))
    assert np.all(peer[1:] == 3 * 2 * 6 * per_coordinate)
    # and the codec mattered: fp64 takes another path
    exact = sgd(problem, **run_options(get_codec("fp64")))
    assert not np.array_equal(exact.iterates[-1], ref.iterates[-1])


@pytest.mark.usefixtures("ray_session")
def test_a_user_codec_as_the_downlink_codec():
    problem = PlantedReLU(d=5, n=80, seed=1)
    options = dict(codec="fp64", downlink_codec=Dither(step=1e-4), workers=2,
                   iterations=10, tol=0.0, seed=2, step_size=0.4)
    ref = sgd(problem, **options)
    result = fit(problem, mode="master", progress=False, **options)
    np.testing.assert_allclose(result.w, ref.iterates[-1], rtol=1e-12, atol=1e-15)
    assert result.config["downlink"] == {"id": "dither", "step": 1e-4}


# ---- the defaults of the contract -----------------------------------------------------

def test_config_defaults_come_from_the_constructor():
    assert Halves().get_config() == {"id": "halves"}
    assert Dither(step=0.5).get_config() == {"id": "dither", "step": 0.5}
    assert Dither.from_config({"id": "dither", "step": 0.5}) == Dither(step=0.5)
    assert Dither.from_config({"step": 0.5}) == Dither(step=0.5)        # id optional
    assert Halves.from_config(Halves().get_config()) == Halves()
    assert get_codec({"id": "qsgd", "levels": 3}) == QSGD(levels=3)


def test_equality_hash_and_repr_defaults():
    assert Dither(0.5) == Dither(step=0.5) and hash(Dither(0.5)) == hash(Dither(step=0.5))
    assert Dither(0.5) != Dither(0.25) and Halves() != Dither()
    assert Halves() != FramedHalves()                       # other id, same parameters
    assert len({Dither(0.5), Dither(step=0.5), Halves()}) == 2
    assert repr(Dither(0.5)) == "Dither(step=0.5)" and repr(Halves()) == "Halves()"
    assert Halves() != "halves"


def test_unknown_variance_falls_back_to_the_documented_constant():
    problem = PlantedReLU(d=20, n=200, seed=0)
    assert Halves().variance_bound(20) is None
    options = dict(workers=2, batch_size=4)         # small batches: the variance counts
    unknown = resolve(problem, codec=Halves(), **options)
    assert unknown.step_size == ReLU().default_step_size(
        4, 20, workers=2, variance_factor=UNKNOWN_VARIANCE, downlink_variance=0.0)
    exact = resolve(problem, codec="fp64", **options)           # q = 0: a larger step
    assert unknown.step_size < 0.9 * exact.step_size

    class Declared(Halves):
        def variance_bound(self, d):
            return UNKNOWN_VARIANCE

    assert resolve(problem, codec=Declared(), **options).step_size == unknown.step_size


def test_a_declared_variance_must_be_a_non_negative_number():
    class Negative(Halves):
        def variance_bound(self, d):
            return -1.0

    with pytest.raises(ValueError, match=r"Negative.variance_bound\(20\) must be >= 0"):
        resolve(PlantedReLU(d=20, n=200, seed=0), codec=Negative(), workers=2)


def test_the_shared_frame_is_there_for_user_codecs():
    codec = FramedHalves()
    v = np.array([1.0, -0.5, 0.25])
    msg = codec.encode(v)
    assert msg[:5] == b"RRLC\x04" and msg[5:13] == b"fhalves\0" and len(msg) == 29 + 6
    np.testing.assert_array_equal(codec.decode(msg), v)
    with pytest.raises(CodecError, match="encoded by codec 'fhalves'.*'fp32'"):
        get_codec("fp32").decode(msg)
    with pytest.raises(CodecError, match="encoded by codec 'fp32'.*'fhalves'"):
        codec.decode(get_codec("fp32").encode(v))
    with pytest.raises(CodecError, match="max_dim=2"):
        codec.decode(msg, max_dim=2)
    with pytest.raises(CodecError, match="truncated"):
        codec.decode(msg[:-1])


def test_registering_a_user_codec_makes_its_name_work(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with pytest.raises(ValueError, match=f"unknown codec 'dither'; available: "
                                         f"{', '.join(available_codecs())}$"):
        get_codec("dither")
    registry.register_codec(Dither)
    assert "dither" in available_codecs()
    assert get_codec("dither", step=0.5) == Dither(step=0.5)


# ---- bad codecs and configs ---------------------------------------------------------

def test_bad_configs_name_what_is_allowed():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) 'stp' for codec 'dither'; "
                                         r"allowed: step"):
        Dither.from_config({"id": "dither", "stp": 1})
    with pytest.raises(ValueError, match=r"'x' for codec 'halves'; allowed: none"):
        Halves.from_config({"id": "halves", "x": 1})
    with pytest.raises(ValueError, match="config id 'qsgd' does not match codec Dither"):
        Dither.from_config({"id": "qsgd"})
    with pytest.raises(ValueError, match=r"'lvls' for codec 'qsgd'; allowed: levels, "
                                         r"bucket_size, norm, coding, seed"):
        get_codec("qsgd", lvls=4)
    with pytest.raises(ValueError, match=r"'scale' for codec 'fp64'; allowed: dtype"):
        get_codec("fp64", scale="none")
    with pytest.raises(ValueError, match=r"got the class Halves; pass an instance, "
                                         r"Halves\(...\)"):
        get_codec(Halves)                                      # the class, not an instance


def test_a_codec_without_a_valid_id_is_refused_by_name():
    class NoId(Codec):
        def encode(self, vec, rng=None):
            return b""

        def decode(self, buf, max_dim=None):
            return np.zeros(0)

    class LongId(Halves):
        codec_id = "much-too-long"

    with pytest.raises(ValueError, match="codec NoId: codec_id must be 1-8 printable "
                                         "ASCII characters without spaces, got None"):
        get_codec(NoId())
    with pytest.raises(ValueError, match="codec LongId: codec_id .* 'much-too-long'"):
        fit(PlantedReLU(d=4, n=40, seed=0), codec=LongId(), progress=False)
    with pytest.raises(ValueError, match="codec LongId: codec_id"):
        registry.register_codec(LongId)


def test_a_constructor_argument_not_kept_is_named():
    class Forgets(Halves):
        def __init__(self, scale: float = 1.0) -> None:
            self._scale = scale

    with pytest.raises(TypeError, match="constructor parameter 'scale' is not stored as "
                                        "attribute self.scale"):
        Forgets().get_config()


def test_encode_and_decode_are_all_a_codec_must_implement():
    class Half(Codec):
        codec_id = "half"

        def encode(self, vec, rng=None):
            return b""

    with pytest.raises(TypeError, match="abstract method.* 'decode'|decode"):
        Half()
