"""What the compressor codecs (top-k, rand-k, sign, TernGrad, natural, PowerSGD) share:
input checks, the random stream, and framing their body after the common header."""

from __future__ import annotations

import abc
import struct
from typing import Any, ClassVar

import numpy as np

from .._validation import check_int
from .base import Codec, CodecError, Header, check_vector, non_finite_error

__all__ = ["Compressor", "read_struct"]


class Compressor(Codec):
    """A codec whose message is the common header and a body of its own.

    Subclasses implement :meth:`_encode_body` and :meth:`_decode_body`; ``unbiased``
    says whether ``E[decode(encode(v))] = v`` (what the default step size assumes).
    """

    unbiased: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False      # whether encode draws from its rng

    def __init__(self, seed: int | None = None) -> None:
        self.seed = None if seed is None else check_int("seed", seed, minimum=0)
        self._rng = np.random.default_rng(self.seed)

    def encode(self, vec: np.ndarray, *, rng: np.random.Generator | None = None) -> bytes:
        """Encode a finite 1-D vector; ``rng`` (default: the codec's own, from ``seed``)
        drives the random choices of stochastic compressors."""
        arr = np.asarray(check_vector(vec), dtype=np.float64)
        if not np.isfinite(arr).all():
            raise non_finite_error("vec", arr)
        body = self._encode_body(arr, self._rng if rng is None else rng)
        return Header(self.codec_id, arr.size, 0, 0, "none", "raw", len(body)).pack() + body

    def decode(self, buf: bytes | bytearray | memoryview, *,
               max_dim: int | None = None) -> np.ndarray:
        """Decode to a new float64 array of length d (see :meth:`Codec.decode`)."""
        header, body = self._read_header(buf, max_dim)
        if (header.levels, header.bucket_size, header.norm, header.coding,
                header.exponent) != (0, 0, "none", "raw", 0):
            raise CodecError(f"codec {self.codec_id!r} keeps its parameters in the "
                             f"payload, but the header carries levels={header.levels}, "
                             f"bucket={header.bucket_size}, norm={header.norm!r}, "
                             f"coding={header.coding!r}, exponent={header.exponent}; "
                             f"allowed: 0, 0, 'none', 'raw', 0")
        with np.errstate(all="ignore"):              # non-finite results are caught below
            out = self._decode_body(header.d, body)
        if not np.isfinite(out).all():
            raise CodecError(f"{self.codec_id} message decodes to NaN or inf values")
        return out

    def _params(self) -> dict[str, Any]:
        return {"seed": self.seed} if self.stochastic else {}

    @abc.abstractmethod
    def _encode_body(self, v: np.ndarray, rng: np.random.Generator) -> bytes:
        """The body for the finite float64 vector ``v``."""

    @abc.abstractmethod
    def _decode_body(self, d: int, body: np.ndarray) -> np.ndarray:
        """The float64 vector of length ``d`` a body describes; CodecError if malformed."""


def read_struct(layout: struct.Struct, body: np.ndarray, what: str) -> tuple:
    """Unpack the fixed-size block at the start of ``body`` (CodecError if too short)."""
    if body.size < layout.size:
        raise CodecError(f"{what} body too short: {body.size} bytes, its parameter block "
                         f"alone is {layout.size} bytes")
    return layout.unpack(body[:layout.size].tobytes())
