"""Sparsifiers: top-k (largest magnitudes, gap-coded indices) and rand-k (shared-seed
indices, values only).

Both take ``k`` (a count) or ``ratio`` (a fraction of ``d``, at least one coordinate),
exactly one of the two.

Top-k body: ``uint32 k``, ``uint8 levels-width``, then the bit stream: the ``k`` index
gaps (first index + 1, then differences, all ``>= 1``) in Elias gamma, then the values:
float32 each (``levels=None``), or with ``levels = s`` a float64 scale ``m = max|v_S|``
followed by a sign bit and a ``bit_length(s)``-bit level per value, stochastically
rounded so that the kept values stay unbiased (``E[Q(v_S)] = v_S``).

Rand-k body: ``uint32 k``, ``uint64`` index seed, ``k`` float32 values. The receiver
draws the same ``k`` distinct indices from the seed; values are sent as they are and
scaled by ``d / k`` on decoding, so ``E[decode(encode(v))] = v``.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from .._validation import check_float, check_int
from . import _bits
from ._compressor import Compressor, read_struct
from ._raw import _overflow_limit
from .base import CodecError

__all__ = ["TopK", "RandK"]

_TOPK = struct.Struct("<IB")
_RANDK = struct.Struct("<IQ")
_F32 = np.dtype("<f4")
_SCALE = struct.Struct("<d")
MAX_K = 2 ** 32 - 1


def _count(k: int | None, ratio: float | None) -> tuple[int | None, float | None]:
    if (k is None) == (ratio is None):
        raise ValueError(f"give exactly one of k (a count) and ratio (a fraction of d), "
                         f"got k={k!r}, ratio={ratio!r}")
    if k is not None:
        return check_int("k", k, minimum=1, maximum=MAX_K), None
    ratio = check_float("ratio", ratio, strictly_positive=True)
    if ratio > 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    return None, ratio


class _Sparsifier(Compressor):
    def __init__(self, k: int | None = None, ratio: float | None = None, *,
                 seed: int | None = None) -> None:
        super().__init__(seed)
        self.k, self.ratio = _count(k, ratio)

    def kept(self, d: int) -> int:
        """Coordinates kept of a ``d``-vector."""
        if self.k is not None:
            return min(self.k, d)
        return max(1, min(d, round(self.ratio * d)))

    def _params(self) -> dict[str, Any]:
        return {"k": self.k, "ratio": self.ratio, **super()._params()}


def as_float32(values: np.ndarray, codec_id: str) -> bytes:
    """``values`` as little-endian float32 bytes; ValueError if one would overflow."""
    limit = _overflow_limit(np.dtype(np.float32))
    if values.size and float(np.max(np.abs(values))) >= limit:
        raise ValueError(f"{codec_id}: a kept value of magnitude "
                         f"{float(np.max(np.abs(values))):.6g} is beyond the float32 range "
                         f"its values travel in; allowed: magnitudes below {limit:.6g}")
    return values.astype(_F32).tobytes()


def top_indices(a: np.ndarray, k: int) -> np.ndarray:
    """Sorted indices of the ``k`` largest entries of ``a``; ties go to lower indices,
    so the choice is the same on every machine."""
    if k >= a.size:
        return np.arange(a.size)
    threshold = np.partition(a, a.size - k)[a.size - k]
    above = np.flatnonzero(a > threshold)
    ties = np.flatnonzero(a == threshold)[:k - above.size]
    return np.sort(np.concatenate([above, ties]))


class TopK(_Sparsifier):
    """Keep the ``k`` coordinates of largest magnitude (biased; use error feedback).

    ``levels=None`` sends the kept values in float32; ``levels = s >= 1`` quantizes them
    stochastically to ``s`` levels of their largest magnitude.
    """

    codec_id = "topk"

    def __init__(self, k: int | None = None, ratio: float | None = None, *,
                 levels: int | None = None, seed: int | None = None) -> None:
        super().__init__(k, ratio, seed=seed)
        self.levels = None if levels is None else check_int("levels", levels, minimum=1,
                                                            maximum=2 ** 31 - 1)

    @property
    def stochastic(self) -> bool:          # type: ignore[override]
        return self.levels is not None

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "levels": self.levels}

    def variance_bound(self, d: int) -> float:
        """``||C(v) - v||^2 <= (1 - k/d) ||v||^2`` for the selection (the dropped
        coordinates are the smallest), plus ``k / (4 s^2)`` for quantized values."""
        k = self.kept(d)
        quantized = 0.0 if self.levels is None else k / (4.0 * self.levels ** 2)
        return 1.0 - k / d + quantized + 2.0 ** -48      # + float32 rounding

    def _encode_body(self, v: np.ndarray, rng: np.random.Generator) -> bytes:
        idx = top_indices(np.abs(v), self.kept(v.size))
        gaps = np.diff(idx, prepend=-1)
        values = v[idx]
        if self.levels is None:
            return (_TOPK.pack(idx.size, 0) + _bits.to_bytes(*_bits.gamma(gaps))
                    + as_float32(values, self.codec_id))
        width = int(self.levels).bit_length()
        scale = float(np.max(np.abs(values)))
        x = np.abs(values) * (self.levels / scale) if scale > 0 else np.zeros(idx.size)
        level = np.minimum(np.floor(x + rng.random(idx.size)), self.levels)
        return (_TOPK.pack(idx.size, width) + _SCALE.pack(scale)
                + _bits.to_bytes(*_bits.gamma(gaps), (values < 0).astype(np.uint8),
                                 _bits.fields(level.astype(np.int64), width)))

    def _decode_body(self, d: int, body: np.ndarray) -> np.ndarray:
        k, width = read_struct(_TOPK, body, "topk")
        expected = 0 if self.levels is None else int(self.levels).bit_length()
        if width != expected or not 1 <= k <= d:
            raise CodecError(f"topk message with k={k}, level width {width} does not "
                             f"fit this codec (level width {expected}) and d={d}; "
                             f"allowed: 1 <= k <= d")
        rest = body[_TOPK.size:]
        if self.levels is None:
            stream, raw = rest[:rest.size - 4 * k], rest[rest.size - 4 * k:]
            if raw.size != 4 * k:
                raise CodecError(f"topk body too short for {k} float32 values")
        else:
            if rest.size < _SCALE.size:
                raise CodecError("topk body too short for its scale")
            (scale,) = _SCALE.unpack(rest[:_SCALE.size].tobytes())
            if not (np.isfinite(scale) and scale >= 0):
                raise CodecError(f"topk scale must be finite and >= 0, got {scale}")
            stream = rest[_SCALE.size:]
        reader = _bits.BitReader(stream, "topk")
        idx = np.cumsum(reader.gamma(k, d)) - 1
        if idx[-1] >= d:
            raise CodecError(f"topk index {idx[-1]} is out of range for d={d}")
        if self.levels is None:
            values = raw.view(_F32).astype(np.float64)
        else:
            negative = reader.bit_array(k)
            level = reader.fields(width, k)
            if level.max() > self.levels:
                raise CodecError(f"topk level {level.max()} exceeds levels={self.levels}")
            values = np.where(negative == 1, -1.0, 1.0) * level * (scale / self.levels)
        reader.finish()
        out = np.zeros(d)
        out[idx] = values
        return out


class RandK(_Sparsifier):
    """Keep ``k`` coordinates chosen at random, scaled by ``d / k`` (unbiased).

    The indices come from a seed drawn from the encoder's ``rng`` and sent in the
    message (8 bytes), so only the values travel.
    """

    codec_id = "randk"
    unbiased = True
    stochastic = True

    def variance_bound(self, d: int) -> float:
        """``E||C(v) - v||^2 = (d/k - 1) ||v||^2``, plus float32 rounding (relative
        ``2**-24`` a value, scaled by ``d/k`` and crossed with the sampling error)."""
        scale = d / self.kept(d)
        return scale - 1.0 + (2 * scale * (scale - 1) + scale ** 2) * 2.0 ** -24

    @staticmethod
    def indices(index_seed: int, d: int, k: int) -> np.ndarray:
        """The sorted ``k`` distinct indices of ``0..d-1`` that ``index_seed`` picks."""
        return np.sort(np.random.default_rng(index_seed).choice(d, size=k, replace=False))

    def _encode_body(self, v: np.ndarray, rng: np.random.Generator) -> bytes:
        k = self.kept(v.size)
        index_seed = int(rng.integers(0, 2 ** 63))
        values = v[self.indices(index_seed, v.size, k)]
        return _RANDK.pack(k, index_seed) + as_float32(values, self.codec_id)

    def _decode_body(self, d: int, body: np.ndarray) -> np.ndarray:
        k, index_seed = read_struct(_RANDK, body, "randk")
        if k != self.kept(d):
            raise CodecError(f"randk message keeps k={k} coordinates, this codec keeps "
                             f"{self.kept(d)} of d={d}")
        raw = body[_RANDK.size:]
        if raw.size != 4 * k:
            raise CodecError(f"randk body must hold {k} float32 values ({4 * k} bytes), "
                             f"got {raw.size} bytes")
        out = np.zeros(d)
        out[self.indices(index_seed, d, k)] = raw.view(_F32).astype(np.float64) * (d / k)
        return out
