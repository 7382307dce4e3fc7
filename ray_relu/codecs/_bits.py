"""Bit streams for the compressor codecs, in numpy: fixed-width fields, Elias gamma
codes of positive integers, and a strict reader.

Bits are written MSB first and padded with zero bits to a whole byte. A stream is
built from *sections* (arrays of 0/1 bits) so that every part decodes with array
arithmetic, no per-value Python loop:

* :func:`fields` writes integers in given widths (a width may be 0);
* :func:`gamma` writes Elias gamma codes of integers ``n >= 1`` as two sections, the
  unary parts (``L`` zeros and a one, ``L = floor(log2 n)``) and then the ``L``-bit
  tails. Each code keeps its exact length ``2L + 1``; only its parts are grouped, as in
  QSGD's stream (``docs/codecs.md``).

:class:`BitReader` reads them back and raises :class:`CodecError` on anything a writer
never produces: a stream that ends early, nonzero padding, or bytes left over.
"""

from __future__ import annotations

import numpy as np

from .base import CodecError
from .bitcoding import bit_length

__all__ = ["fields", "gamma", "to_bytes", "BitReader"]


def fields(values: np.ndarray, widths: np.ndarray | int) -> np.ndarray:
    """The bits of each ``values[i]`` in ``widths[i]`` bits, MSB first, concatenated."""
    values = np.asarray(values, dtype=np.int64)
    widths = np.broadcast_to(np.asarray(widths, dtype=np.int64), values.shape)
    owner = np.repeat(np.arange(values.size), widths)
    ends = np.cumsum(widths)
    # bit j of the stream is bit (end of its field - 1 - j) of its value
    shift = np.repeat(ends, widths) - 1 - np.arange(owner.size)
    return ((values[owner] >> shift) & 1).astype(np.uint8)


def gamma(n: np.ndarray) -> list[np.ndarray]:
    """Elias gamma codes of the integers ``n >= 1``: [unary section, tail section]."""
    n = np.asarray(n, dtype=np.int64)
    tail_bits = bit_length(n) - 1
    unary = np.zeros(int(tail_bits.sum()) + n.size, dtype=np.uint8)
    unary[np.cumsum(tail_bits + 1) - 1] = 1
    return [unary, fields(n - (np.int64(1) << tail_bits), tail_bits)]


def to_bytes(*sections: np.ndarray) -> bytes:
    """Concatenate bit sections and pack them into bytes (zero bits pad the end)."""
    bits = np.concatenate(sections) if sections else np.zeros(0, dtype=np.uint8)
    return np.packbits(bits).tobytes()


class BitReader:
    """Reads sections written by :func:`fields` and :func:`gamma`, in order."""

    def __init__(self, data: np.ndarray, what: str) -> None:
        self.bits = np.unpackbits(data)
        self.pos = 0
        self.what = what

    def _take(self, count: int) -> np.ndarray:
        if count > self.bits.size - self.pos:
            raise CodecError(f"{self.what} bit stream ends early: {count} more bits "
                             f"needed, {self.bits.size - self.pos} left")
        out = self.bits[self.pos:self.pos + count]
        self.pos += count
        return out

    def fields(self, widths: np.ndarray | int, count: int | None = None) -> np.ndarray:
        """Read fields of the given widths (an int width needs ``count``)."""
        if np.isscalar(widths):
            widths = np.full(count, widths, dtype=np.int64)
        widths = np.asarray(widths, dtype=np.int64)
        bits = self._take(int(widths.sum())).astype(np.float64)
        owner = np.repeat(np.arange(widths.size), widths)
        shift = np.repeat(np.cumsum(widths), widths) - 1 - np.arange(owner.size)
        # widths stay below 53 bits, so float64 sums are exact
        return np.bincount(owner, weights=bits * np.exp2(shift),
                           minlength=widths.size).astype(np.int64)

    def bit_array(self, count: int) -> np.ndarray:
        """``count`` single bits as a uint8 array of 0/1."""
        return self._take(count)

    def gamma(self, count: int, limit: int) -> np.ndarray:
        """Read ``count`` gamma codes; each value must be ``<= limit`` (< 2**52)."""
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        rest = self.bits[self.pos:]
        ones = np.flatnonzero(rest)[:count]
        if ones.size < count:
            raise CodecError(f"{self.what} bit stream ends early: {count} Elias gamma "
                             f"codes announced, {ones.size} found")
        tail_bits = np.diff(ones, prepend=-1) - 1
        if int(tail_bits.max()) >= int(limit).bit_length():
            raise CodecError(f"{self.what} holds an Elias gamma code above {limit}")
        self.pos += int(ones[-1]) + 1
        values = (np.int64(1) << tail_bits) + self.fields(tail_bits)
        if int(values.max()) > limit:
            raise CodecError(f"{self.what} holds an Elias gamma code above {limit}")
        return values

    def finish(self) -> None:
        """Check that only zero padding (less than a byte) is left."""
        left = self.bits.size - self.pos
        if left >= 8:
            raise CodecError(f"{self.what} has {left // 8} trailing byte(s) after its "
                             f"bit stream")
        if self.bits[self.pos:].any():
            raise CodecError(f"{self.what} bit stream has nonzero padding bits")
