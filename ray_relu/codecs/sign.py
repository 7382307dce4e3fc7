"""signSGD's compressor with a scale: one bit per coordinate.

``C(v) = (||v||_1 / d) sign(v)`` (Bernstein et al. 2018; with the l1 scale of
Karimireddy et al. 2019, EF-SignSGD), ``sign(0) = +1``. Body: the float64 scale, then
``d`` sign bits (1 = negative) packed MSB first, zero-padded to a byte. Biased: pair it
with :class:`~ray_relu.codecs.ErrorFeedback` where it stalls.
"""

from __future__ import annotations

import struct

import numpy as np

from . import _bits
from ._compressor import Compressor, read_struct
from .base import CodecError

__all__ = ["Sign"]

_SCALE = struct.Struct("<d")


class Sign(Compressor):
    """Scaled sign compression, ``d + 64`` bits a message body."""

    codec_id = "sign"

    def variance_bound(self, d: int) -> float:
        """``||C(v) - v||^2 = ||v||^2 - ||v||_1^2 / d <= (1 - 1/d) ||v||^2``
        (deterministic, biased)."""
        return 1.0 - 1.0 / d

    def _encode_body(self, v: np.ndarray, rng: np.random.Generator) -> bytes:
        scale = float(np.sum(np.abs(v))) / v.size
        return _SCALE.pack(scale) + _bits.to_bytes((v < 0).astype(np.uint8))

    def _decode_body(self, d: int, body: np.ndarray) -> np.ndarray:
        (scale,) = read_struct(_SCALE, body, "sign")
        if not (np.isfinite(scale) and scale >= 0):
            raise CodecError(f"sign scale must be finite and >= 0, got {scale}")
        reader = _bits.BitReader(body[_SCALE.size:], "sign")
        negative = reader.bit_array(d)
        reader.finish()
        return np.where(negative == 1, -scale, scale)
