"""Natural compression (Horvath et al. 2019): stochastic rounding to a power of two.

A coordinate with ``2**e <= |v_i| < 2**(e+1)`` becomes ``sign(v_i) 2**(e+1)`` with
probability ``|v_i| / 2**e - 1`` and ``sign(v_i) 2**e`` otherwise, so
``E[C(v)] = v`` and ``E||C(v) - v||^2 <= ||v||^2 / 8``. Only sign and exponent travel,
9 bits a coordinate (as a float32's sign and exponent fields).

Body: ``int16 top`` (the largest exponent a coordinate can round to), then ``d`` sign
bits (1 = negative) packed MSB first, then ``d`` exponent bytes ``top - e_i``, with 255
for zero. The 255 exponents below ``top`` cover 2**-254 of the message's largest
magnitude; a coordinate smaller than ``2**(top - 254)`` becomes that power or zero,
with the probability that keeps it unbiased.
"""

from __future__ import annotations

import struct

import numpy as np

from . import _bits
from ._compressor import Compressor, read_struct
from .base import CodecError

__all__ = ["Natural"]

_TOP = struct.Struct("<h")
_ZERO = 255
_SPAN = 254                    # exponent codes 0..254 below top
# Rounding up must stay finite: inputs below 2**1023 round to at most 2**1023.
MAX_MAGNITUDE = 2.0 ** 1023
_MIN_TOP = -1074 + _SPAN       # lower tops would put every code below float64's range


class Natural(Compressor):
    """Unbiased power-of-two rounding, 9 bits a coordinate."""

    codec_id = "natural"
    unbiased = True
    stochastic = True

    def variance_bound(self, d: int) -> float:
        """``E||C(v) - v||^2 <= ||v||^2 / 8``, plus ``2**-500`` for coordinates below
        the message's exponent range (at most ``2**-506 max|v|^2`` each)."""
        return 0.125 + d * 2.0 ** -500

    def _encode_body(self, v: np.ndarray, rng: np.random.Generator) -> bytes:
        a = np.abs(v)
        peak = float(a.max())
        if peak >= MAX_MAGNITUDE:
            raise ValueError(f"vec has a value of magnitude {peak:.6g}; natural "
                             f"compression allows magnitudes below 2**1023 "
                             f"({MAX_MAGNITUDE:.6g}), whose rounding stays finite")
        u = rng.random(v.size)
        if peak == 0.0:
            top = _MIN_TOP
        else:
            top = max(_MIN_TOP, int(np.frexp(peak)[1]))     # peak < 2**top
        low = top - _SPAN
        mantissa, exponent = np.frexp(a)                    # a = mantissa 2**exponent
        # normal range: 2**(exponent-1) <= a, round up with probability 2 mantissa - 1
        rounded = exponent - 1 + (u < 2.0 * mantissa - 1.0)
        small = a < np.ldexp(1.0, low)
        survives = u * np.ldexp(1.0, low) < a                # probability a / 2**low
        code = np.where(small, np.where(survives, _SPAN, _ZERO), top - rounded)
        return (_TOP.pack(top) + _bits.to_bytes((v < 0).astype(np.uint8))
                + code.astype(np.uint8).tobytes())

    def _decode_body(self, d: int, body: np.ndarray) -> np.ndarray:
        (top,) = read_struct(_TOP, body, "natural")
        if not _MIN_TOP <= top <= 1023:
            raise CodecError(f"natural top exponent {top} is out of range; allowed "
                             f"{_MIN_TOP}..1023")
        sign_bytes = -(-d // 8)
        rest = body[_TOP.size:]
        if rest.size != sign_bytes + d:
            raise CodecError(f"natural body for d={d} must be {_TOP.size + sign_bytes + d} "
                             f"bytes, got {body.size}")
        reader = _bits.BitReader(rest[:sign_bytes], "natural")
        negative = reader.bit_array(d)
        reader.finish()
        code = rest[sign_bytes:].astype(np.int64)
        magnitude = np.where(code == _ZERO, 0.0, np.ldexp(1.0, top - code))
        return np.where(negative == 1, -magnitude, magnitude)
