"""Shared machinery for the exact float codecs (fp64, fp32, fp16): the vector cast to a
float type, after an optional scale-exponent block (fp16's)."""

from __future__ import annotations

import struct

import numpy as np

from .._validation import check_int
from .base import HEADER_SIZE, Codec, CodecError, check_vector, non_finite_error, split_block

_EXPONENT = struct.Struct("<h")


class RawFloatCodec(Codec):
    """Payload: [int16 exponent ``e`` if ``_scaled``] then the vector divided by
    ``2**e``, cast to ``self._dtype`` (little-endian)."""

    _dtype: np.dtype
    _scaled = False            # whether the payload opens with a scale exponent

    def encode(self, vec: np.ndarray, *, rng: np.random.Generator | None = None) -> bytes:
        """Cast ``vec`` to this codec's float type; ``rng`` is ignored (exact codec)."""
        arr = check_vector(vec)
        limit = self._input_limit()
        # one cheap check of the input: NaN fails both comparisons, inf and values that
        # would round to inf in the narrower type fail one
        if not (float(arr.min()) > -limit and float(arr.max()) < limit):
            if not np.isfinite(arr).all():
                raise non_finite_error("vec", arr)
            peak = float(np.max(np.abs(arr)))
            raise ValueError(f"vec has a value of magnitude {peak:.6g}, beyond the "
                             f"{self._dtype.name} range (max "
                             f"{float(np.finfo(self._dtype).max):.6g}); allowed: values "
                             f"that round to a finite {self._dtype.name}")
        exponent = self._exponent_for(arr)
        if exponent:
            arr = np.ldexp(arr, -exponent)        # a power of two: exact in float64
        values = arr.astype(self._dtype.newbyteorder("<"), copy=False).tobytes()
        block = _EXPONENT.pack(exponent) if self._scaled else b""
        return self.pack_message(arr.size, block, values)

    def max_message_bytes(self, d: int) -> int:
        """The exact length of every message for ``d`` coordinates."""
        d = check_int("d", d, minimum=1)
        return HEADER_SIZE + (_EXPONENT.size if self._scaled else 0) + self._dtype.itemsize * d

    def _exponent_for(self, arr: np.ndarray) -> int:
        """Power of two the payload is scaled by (``v = payload * 2**e``); 0: none."""
        return 0

    def decode(self, buf: bytes | bytearray | memoryview, *,
               max_dim: int | None = None) -> np.ndarray:
        """Decode to a new float64 array of length d (see :meth:`Codec.decode`)."""
        d, payload = self.read_message(buf, max_dim)
        exponent = 0
        if self._scaled:
            (exponent,), payload = split_block(payload, _EXPONENT, "scale exponent")
            if not self._exponent_ok(exponent):
                raise CodecError(f"{self.codec_id} scale exponent {exponent} is not "
                                 f"allowed; allowed: {self._allowed_exponents()}")
        expected = d * self._dtype.itemsize
        if payload.size != expected:
            raise CodecError(f"{self.codec_id} values for d={d} must be {expected} "
                             f"bytes, got {payload.size}")
        with np.errstate(invalid="ignore"):       # a NaN on the wire is reported below
            out = payload.view(self._dtype.newbyteorder("<")).astype(np.float64)
            if exponent:
                out = np.ldexp(out, exponent)
        if not np.isfinite(out).all():        # the encoder never writes NaN or inf
            raise CodecError(f"{self.codec_id} payload holds NaN or inf values")
        return out

    def _input_limit(self) -> float:
        """Magnitudes at or beyond this are refused by :meth:`encode`."""
        return _overflow_limit(self._dtype)

    def _exponent_ok(self, exponent: int) -> bool:
        return exponent == 0

    def _allowed_exponents(self) -> str:
        return "0"


def _overflow_limit(dtype: np.dtype) -> float:
    """Smallest magnitude that rounds to inf when cast to ``dtype`` (round to nearest):
    the largest finite value plus half a unit in its last place."""
    if dtype == np.float64:
        return float("inf")
    top = np.finfo(dtype).max
    below = np.nextafter(top, dtype.type(0))
    return float(top) + (float(top) - float(below)) / 2
