"""Shared machinery for the exact float codecs (fp64, fp32, fp16): header + raw array."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Codec, CodecError, Header, HEADER_SIZE, check_vector, non_finite_error


class RawFloatCodec(Codec):
    """Header followed by the vector cast to ``self._dtype`` (little-endian)."""

    _dtype: np.dtype

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
        payload = arr.astype(self._dtype.newbyteorder("<"), copy=False).tobytes()
        header = Header(self.codec_id, arr.size, 0, 0, "none", "raw", len(payload),
                        exponent)
        return header.pack() + payload

    def _exponent_for(self, arr: np.ndarray) -> int:
        """Power of two the payload is scaled by (``v = payload * 2**e``); 0: none."""
        return 0

    def decode(self, buf: bytes | bytearray | memoryview, *,
               max_dim: int | None = None) -> np.ndarray:
        """Decode to a new float64 array of length d (see :meth:`Codec.decode`)."""
        header, payload = self._read_header(buf, max_dim)
        if (header.levels, header.bucket_size, header.norm, header.coding) != \
                (0, 0, "none", "raw") or not self._exponent_ok(header.exponent):
            raise CodecError(f"codec {self.codec_id!r} has no parameters, but the header "
                             f"carries levels={header.levels}, bucket={header.bucket_size}, "
                             f"norm={header.norm!r}, coding={header.coding!r}, "
                             f"exponent={header.exponent}; allowed: "
                             f"{self._allowed_header()}")
        expected = header.d * self._dtype.itemsize
        if header.payload_len != expected:
            raise CodecError(f"{self.codec_id} payload for d={header.d} must be {expected} "
                             f"bytes, got {header.payload_len}")
        with np.errstate(invalid="ignore"):       # a NaN on the wire is reported below
            out = payload.view(self._dtype.newbyteorder("<")).astype(np.float64)
            if header.exponent:
                out = np.ldexp(out, header.exponent)
        if not np.isfinite(out).all():        # the encoder never writes NaN or inf
            raise CodecError(f"{self.codec_id} payload holds NaN or inf values")
        return out


    def _input_limit(self) -> float:
        """Magnitudes at or beyond this are refused by :meth:`encode`."""
        return _overflow_limit(self._dtype)

    def _exponent_ok(self, exponent: int) -> bool:
        return exponent == 0

    def _allowed_header(self) -> str:
        return "levels=0, bucket=0, norm='none', coding='raw', exponent=0"


def _overflow_limit(dtype: np.dtype) -> float:
    """Smallest magnitude that rounds to inf when cast to ``dtype`` (round to nearest):
    the largest finite value plus half a unit in its last place."""
    if dtype == np.float64:
        return float("inf")
    top = np.finfo(dtype).max
    below = np.nextafter(top, dtype.type(0))
    return float(top) + (float(top) - float(below)) / 2
