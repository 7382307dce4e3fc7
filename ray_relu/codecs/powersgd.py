"""PowerSGD (Vogels et al. 2019) as a per-worker codec: a rank-``r`` approximation
``P Q^T`` of the gradient seen as a ``rows x cols`` matrix, from one power iteration.

Encoding: draw ``Q_0`` (``cols x r``, standard normal) from the message's random
stream, ``P = orth(M Q_0)`` (QR), ``Q = M^T P``; send ``P`` and ``Q`` in float32,
``(rows + cols) r`` numbers instead of ``rows cols``. Decoding: ``P Q^T``. Biased; the
published method relies on error feedback, so pair it with
:class:`~ray_relu.codecs.ErrorFeedback`.

Two differences from the original, which lives inside an allreduce: there the workers
average their ``P`` before computing ``Q`` (one shared factorization) and reuse last
round's ``Q`` as the start (warm start). A codec sees one worker's gradient, so each
worker factorizes its own, from a fresh ``Q_0``.

**On a vector** (``rows = 1``, the default, as for the ReLU's ``d`` weights) the
gradient is a ``1 x d`` matrix of rank 1: ``P`` is ``+-1`` and ``Q = +-v``, so the
message is the vector in float32 plus one number. Nothing is compressed and nothing
is lost beyond float32 rounding. It compresses a matrix parameter, such as the
``units x d`` hidden layer of :class:`~ray_relu.models.OneHiddenLayer`
(``PowerSGD(rank, rows=units)``).

Body: ``uint32 rows``, ``uint32 rank``, then ``P`` (``rows x r``) and ``Q``
(``cols x r``), float32, row-major.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from .._validation import check_int
from ._compressor import Compressor, read_struct
from .sparse import as_float32
from .base import CodecError

__all__ = ["PowerSGD"]

_SHAPE = struct.Struct("<II")
_F32 = np.dtype("<f4")


class PowerSGD(Compressor):
    """Rank-``rank`` compression of a gradient reshaped to ``rows x (d / rows)``."""

    codec_id = "powersgd"
    stochastic = True

    def __init__(self, rank: int = 1, rows: int = 1, *, seed: int | None = None) -> None:
        super().__init__(seed)
        self.rank = check_int("rank", rank, minimum=1)
        self.rows = check_int("rows", rows, minimum=1)

    def _params(self) -> dict[str, Any]:
        return {"rank": self.rank, "rows": self.rows, **super()._params()}

    def variance_bound(self, d: int) -> None:
        """None: the error depends on the gradient's spectrum, not only its norm."""
        return None

    def _shape(self, d: int) -> tuple[int, int, int]:
        if d % self.rows:
            raise ValueError(f"PowerSGD(rows={self.rows}) needs d divisible by rows to "
                             f"see the vector as a matrix, got d={d}")
        cols = d // self.rows
        return self.rows, cols, min(self.rank, self.rows, cols)

    def _encode_body(self, v: np.ndarray, rng: np.random.Generator) -> bytes:
        rows, cols, r = self._shape(v.size)
        M = v.reshape(rows, cols)
        P, _ = np.linalg.qr(M @ rng.standard_normal((cols, r)))
        Q = M.T @ P
        return (_SHAPE.pack(rows, r) + as_float32(P, self.codec_id)
                + as_float32(Q, self.codec_id))

    def _decode_body(self, d: int, body: np.ndarray) -> np.ndarray:
        rows, r = read_struct(_SHAPE, body, "powersgd")
        if rows != self.rows or d % rows or r != min(self.rank, rows, d // rows):
            raise CodecError(f"powersgd message of {rows} rows and rank {r} does not fit "
                             f"this codec (rows={self.rows}, rank={self.rank}) and d={d}")
        cols = d // rows
        raw = body[_SHAPE.size:]
        if raw.size != 4 * r * (rows + cols):
            raise CodecError(f"powersgd body must hold {(rows + cols) * r} float32 "
                             f"numbers, got {raw.size} bytes")
        numbers = raw.view(_F32).astype(np.float64)
        P = numbers[:rows * r].reshape(rows, r)
        Q = numbers[rows * r:].reshape(cols, r)
        return (P @ Q.T).ravel()
