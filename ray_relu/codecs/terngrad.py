"""TernGrad (Wen et al. 2017): ternary levels ``{-m, 0, +m}`` with ``m = max|v|``.

``C(v)_i = m sign(v_i) b_i`` with ``b_i ~ Bernoulli(|v_i| / m)``, so ``E[C(v)] = v``.
Body: the float64 scale ``m``, a coding byte, then whichever of two codings is shorter:

* ``packed``: five ternary digits a byte (``3**5 = 243 <= 256``; digit 0 = zero,
  1 = +m, 2 = -m, the first coordinate in the lowest digit), ``ceil(d / 5)`` bytes,
  1.6 bits a coordinate against ``log2 3 = 1.585``;
* ``elias``: ``uint32`` count of nonzeros, their position gaps in Elias gamma, then one
  sign bit each (1 = negative); short when few coordinates survive.
"""

from __future__ import annotations

import struct

import numpy as np

from . import _bits
from ._compressor import Compressor, read_struct
from .base import CodecError

__all__ = ["TernGrad"]

_HEAD = struct.Struct("<dB")
_COUNT = struct.Struct("<I")
CODINGS = ("packed", "elias")
_DIGITS = 5
_POWERS = 3 ** np.arange(_DIGITS)


class TernGrad(Compressor):
    """Unbiased ternary compression with a max-norm scale."""

    codec_id = "terngrad"
    unbiased = True
    stochastic = True

    def variance_bound(self, d: int) -> float:
        """``E||C(v) - v||^2 = m ||v||_1 - ||v||^2 <= (sqrt(d) - 1) ||v||^2``."""
        return float(np.sqrt(d)) - 1.0

    def _encode_body(self, v: np.ndarray, rng: np.random.Generator) -> bytes:
        scale = float(np.max(np.abs(v)))
        u = rng.random(v.size)
        keep = u * scale < np.abs(v)           # probability |v_i| / m, never when m = 0
        digits = np.where(keep, np.where(v < 0, 2, 1), 0).astype(np.int64)
        packed = _pack_ternary(digits)
        where = np.flatnonzero(keep)
        sparse = _COUNT.pack(where.size) + _bits.to_bytes(
            *_bits.gamma(np.diff(where, prepend=-1)), (v[where] < 0).astype(np.uint8))
        if len(sparse) < len(packed):
            return _HEAD.pack(scale, 1) + sparse
        return _HEAD.pack(scale, 0) + packed

    def _decode_body(self, d: int, body: np.ndarray) -> np.ndarray:
        scale, coding = read_struct(_HEAD, body, "terngrad")
        if not (np.isfinite(scale) and scale >= 0) or coding >= len(CODINGS):
            raise CodecError(f"terngrad header block has scale {scale} and coding "
                             f"{coding}; allowed: a finite scale >= 0, coding 0 (packed) "
                             f"or 1 (elias)")
        rest = body[_HEAD.size:]
        out = np.zeros(d)
        if coding == 0:
            digits = _unpack_ternary(rest, d)
            out[digits == 1], out[digits == 2] = scale, -scale
            return out
        (count,) = read_struct(_COUNT, rest, "terngrad")
        if count > d:
            raise CodecError(f"terngrad message announces {count} nonzeros for d={d}")
        reader = _bits.BitReader(rest[_COUNT.size:], "terngrad")
        where = np.cumsum(reader.gamma(count, d)) - 1
        if count and where[-1] >= d:
            raise CodecError(f"terngrad position {where[-1]} is out of range for d={d}")
        negative = reader.bit_array(count)
        reader.finish()
        out[where] = np.where(negative == 1, -scale, scale)
        return out


def _pack_ternary(digits: np.ndarray) -> bytes:
    padded = np.zeros(-(-digits.size // _DIGITS) * _DIGITS, dtype=np.int64)
    padded[:digits.size] = digits
    return (padded.reshape(-1, _DIGITS) @ _POWERS).astype(np.uint8).tobytes()


def _unpack_ternary(data: np.ndarray, d: int) -> np.ndarray:
    if data.size != -(-d // _DIGITS):
        raise CodecError(f"packed terngrad body for d={d} must be {-(-d // _DIGITS)} "
                         f"bytes, got {data.size}")
    if data.size and int(data.max()) >= 3 ** _DIGITS:
        raise CodecError(f"packed terngrad byte {int(data.max())} is not 5 ternary "
                         f"digits (allowed 0..242)")
    digits = (data.astype(np.int64)[:, None] // _POWERS) % 3
    digits = digits.ravel()
    if digits[d:].any():
        raise CodecError("packed terngrad padding digits must be zero")
    return digits[:d]
