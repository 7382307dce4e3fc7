"""Vectorized bit-level coding: variable-width fields, Elias codes, fixed-width packing.

Everything here works on whole arrays at once (no Python loop per value). Bit streams
are most significant bit first; variable-width fields are written and read through
64-bit words (:func:`pack_fields`, :func:`unpack_fields`), fixed-width codes with SWAR
shifts (:func:`pack_fixed`, :func:`unpack_fixed`).

Elias codes (Elias 1975) for integers ``n >= 1``, with ``L = floor(log2 n)``:

* gamma: ``L`` zeros, then the ``L + 1`` binary digits of ``n``; ``2L + 1`` bits.
  Written here as a *unary part* (``L`` zeros and the leading one) and a *tail*
  (the ``L`` digits after the leading one).
* delta: gamma code of ``L + 1``, then the ``L`` tail digits of ``n``;
  ``L + 2 floor(log2(L + 1)) + 1`` bits.
* omega: recursive length prefixes; only its length is computed here (for the
  comparison in ``benchmarks/bits_on_wire.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "bit_length", "gamma_length", "delta_length", "omega_length",
    "pack_fields", "unpack_fields", "new_words", "or_fields", "or_bits", "words_to_bytes",
    "pack_fixed", "unpack_fixed", "CHUNK", "MAX_TAIL_BITS", "MAX_FIELD_BITS",
]

# Every integer coded here is < 2**32 (gaps <= d <= 2**31, levels < 2**31, the count
# + 1 <= 2**31 + 1), so no Elias tail is longer than this; decoders reject longer
# unary runs up front.
MAX_TAIL_BITS = 32
# A field read through one 8-byte window starting at its first byte: <= 64 - 7 bits.
MAX_FIELD_BITS = 57
_U64 = np.uint64


def bit_length(n: np.ndarray) -> np.ndarray:
    """``floor(log2 n) + 1`` for integers ``1 <= n < 2**53``, as int64."""
    # read the exponent field of the (exact) float64 value: two light passes
    bits = np.asarray(n, dtype=np.float64).view(np.int64) >> 52
    bits -= 1022
    return bits


def gamma_length(n: np.ndarray) -> np.ndarray:
    """Length in bits of the Elias gamma code of each ``n >= 1``."""
    return 2 * bit_length(n) - 1


def delta_length(n: np.ndarray) -> np.ndarray:
    """Length in bits of the Elias delta code of each ``n >= 1``."""
    tail = bit_length(n) - 1
    return tail + gamma_length(tail + 1)


def omega_length(n: np.ndarray) -> np.ndarray:
    """Length in bits of the Elias omega code of each ``n >= 1``."""
    n = np.asarray(n, dtype=np.int64)
    total = np.ones(n.shape, dtype=np.int64)          # the terminating zero
    cur = n.copy()
    while True:                                        # <= 5 rounds for n < 2**64
        active = cur > 1
        if not active.any():
            return total
        bl = bit_length(np.where(active, cur, 1))
        total += np.where(active, bl, 0)
        cur = np.where(active, bl - 1, 1)


def pack_fields(*sections: tuple[Any, np.ndarray]) -> tuple[np.ndarray, int]:
    """Concatenate fields, MSB first: for each ``(values, widths)`` section in turn,
    ``values[i]`` written in ``widths[i]`` bits.

    ``0 <= values[i] < 2**widths[i]``, ``0 <= widths[i] <= MAX_FIELD_BITS``; ``values``
    may be a scalar (the same value for every field). Returns the stream as a uint8
    array, zero-padded to a whole byte, and its length in bits.
    """
    sections = [(values, np.asarray(widths, dtype=np.int64)) for values, widths in sections]
    total = sum(int(widths.sum()) for _, widths in sections)
    words = new_words(total)
    offset = 0
    for values, widths in sections:
        scalar = np.ndim(values) == 0
        for lo in range(0, widths.size, CHUNK):
            offset = or_fields(words, values if scalar else values[lo:lo + CHUNK],
                               widths[lo:lo + CHUNK], offset)
    return words_to_bytes(words, total), total


# Fields per call of or_fields in loops over long inputs: small enough for the cache,
# large enough that numpy's per-call overhead does not matter.
CHUNK = 1 << 15


def new_words(total_bits: int) -> np.ndarray:
    """Zeroed 64-bit words for a stream of ``total_bits`` bits (one spare word)."""
    return np.zeros(-(-total_bits // 64) + 1, dtype=_U64)


def words_to_bytes(words: np.ndarray, total_bits: int) -> np.ndarray:
    """The first ``ceil(total_bits / 8)`` bytes of ``words``, big-endian, as uint8."""
    nwords = -(-total_bits // 64)
    return words[:nwords].astype(">u8").view(np.uint8)[:-(-total_bits // 8)]


def or_fields(words: np.ndarray, values: Any, widths: np.ndarray, offset: int) -> int:
    """Write fields into ``words`` from bit ``offset`` on (see :func:`pack_fields`);
    return the bit offset after them.

    Works on 64-bit words rather than on single bits: each field lands in the word
    holding its first bit (and spills into the next one); the fields sharing a word
    are OR-ed together with one ``reduceat``. The cost is a few passes over the
    fields, whatever their widths.
    """
    widths = np.asarray(widths, dtype=np.int64)
    ends = np.cumsum(widths)
    ends += offset
    live = np.flatnonzero(widths != 0)
    if live.size:
        w = widths[live]
        starts = ends[live] - w
        word = starts >> 6
        over = w + (starts & 63) - 64                # > 0: bits spilling into the next word
        if np.ndim(values) == 0:
            v = np.full(live.size, values, dtype=_U64)
        else:
            v = np.asarray(values, dtype=np.int64)[live].view(_U64)
        head = (v << np.maximum(-over, 0).view(_U64)) >> np.maximum(over, 0).view(_U64)
        first = np.flatnonzero(np.diff(word, prepend=-1) != 0)
        words[word[first]] |= np.bitwise_or.reduceat(head, first)
        spill = np.flatnonzero(over > 0)
        if spill.size:
            words[word[spill] + 1] |= v[spill] << (64 - over[spill]).view(_U64)
    return int(ends[-1]) if ends.size else offset


def or_bits(words: np.ndarray, positions: np.ndarray) -> None:
    """Set the bits at the (increasing) ``positions`` of the stream held in ``words``."""
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size == 0:
        return
    word = positions >> 6
    bit = np.left_shift(1, 63 - (positions & 63)).view(_U64)
    first = np.flatnonzero(np.diff(word, prepend=-1) != 0)
    words[word[first]] |= np.bitwise_or.reduceat(bit, first)


def unpack_fields(data: np.ndarray, starts: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Read the fields of ``widths`` (each ``<= MAX_FIELD_BITS``) starting at bit offsets
    ``starts`` of the byte stream ``data``; as int64. Every field must lie inside
    ``data`` (the caller checks the stream is long enough)."""
    widths = np.asarray(widths, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    out = np.empty(widths.size, dtype=np.int64)
    padded = np.zeros(data.size + 8, dtype=np.uint8)
    padded[:data.size] = data
    # every 8-byte window of the stream, one per byte offset (an overlapping view)
    windows = np.ndarray((data.size + 1,), dtype="<u8", buffer=padded, strides=(1,))
    one = _U64(1)
    for lo in range(0, widths.size, CHUNK):
        w, st = widths[lo:lo + CHUNK], starts[lo:lo + CHUNK]
        word = windows[st >> 3].byteswap()            # big-endian: first bit on top
        word >>= (64 - w - (st & 7)).view(_U64)       # field at the bottom (0..64)
        word &= np.left_shift(one, w.view(_U64)) - one
        out[lo:lo + CHUNK] = word.view(np.int64)
    return out


def _word_bytes(width: int) -> int:
    return 1 if width <= 8 else 2 if width <= 16 else 4


def _slot_mask(slot: int) -> np.uint64:
    """Low ``slot`` bits set in every ``2*slot``-bit lane of a uint64."""
    lane = (1 << slot) - 1
    return np.uint64(sum(lane << i for i in range(0, 64, 2 * slot)))


def _compact(x: np.ndarray, slot: int, width: int) -> np.ndarray:
    """Squeeze the ``64 // slot`` codes held in ``slot``-bit lanes of each uint64 into
    one right-aligned run of ``width``-bit fields (first code most significant).

    SWAR: merge neighbouring lanes pairwise, log2(64/slot) rounds over the array.
    """
    k = 1                                        # codes per lane
    while slot < 64:
        m = _slot_mask(slot)
        x = (((x >> np.uint64(slot)) & m) << np.uint64(k * width)) | (x & m)
        slot, k = 2 * slot, 2 * k
    return x


def _expand(x: np.ndarray, slot: int, width: int) -> np.ndarray:
    """Inverse of :func:`_compact`."""
    lanes = []
    s = slot
    while s < 64:
        lanes.append(s)
        s *= 2
    k = 64 // slot
    for s in reversed(lanes):                    # split 2s-bit lanes into s-bit lanes
        k //= 2
        low = np.uint64(sum(((1 << (k * width)) - 1) << i for i in range(0, 64, 2 * s)))
        x = (((x >> np.uint64(k * width)) & _slot_mask(s)) << np.uint64(s)) | (x & low)
    return x


def _group_bytes(codes: np.ndarray, width: int) -> np.ndarray:
    """Pack groups of 8 codes (8*width bits = width bytes each), width <= 16."""
    n8 = -(-codes.size // 8)
    if width <= 8:
        if codes.dtype == np.uint8 and codes.size % 8 == 0 and codes.flags.c_contiguous:
            c = codes
        else:
            c = np.zeros(n8 * 8, dtype=np.uint8)
            c[:codes.size] = codes
        x = _compact(c.view(">u8").astype(np.uint64), 8, width)
        return x.astype(">u8").view(np.uint8).reshape(n8, 8)[:, 8 - width:]
    c = np.zeros(n8 * 8, dtype=">u2")           # big-endian lanes, first code on top
    c[:codes.size] = codes
    x = _compact(c.view(">u8").astype(np.uint64), 16, width).reshape(n8, 2)
    hi, lo = x[:, 0].copy(), x[:, 1].copy()      # 4*width bits each
    half = 4 * width
    if half < 64:                                # as one 128-bit value hi * 2**half + lo
        lo |= hi << np.uint64(half)
        hi >>= np.uint64(64 - half)
    words = np.empty((n8, 2), dtype=">u8")
    words[:, 0] = hi
    words[:, 1] = lo
    return words.view(np.uint8).reshape(n8, 16)[:, 16 - width:]


def _group_codes(data: np.ndarray, count: int, width: int) -> np.ndarray:
    """Inverse of :func:`_group_bytes`: ``count`` codes as uint8 or uint16.

    Each group of 8 codes is ``width`` bytes; strided big-endian 8-byte windows over
    the (padded) stream load every group's bytes in one gather.
    """
    n8 = -(-count // 8)
    padded = np.zeros(n8 * width + 8, dtype=np.uint8)
    padded[:data.size] = data

    def window(offset: int) -> np.ndarray:
        return np.ndarray((n8,), dtype=">u8", buffer=padded, offset=offset,
                          strides=(width,)).astype(np.uint64)

    if width <= 8:
        x = window(0) >> np.uint64(8 * (8 - width))     # the group, right-aligned
        return _expand(x, 8, width).astype(">u8").view(np.uint8)[:count]
    # a group is a 128-bit number hi * 2**64 + lo
    hi = window(0) >> np.uint64(8 * (16 - width))
    lo = window(width - 8)
    half = 4 * width                             # as two 4-code halves in 64-bit lanes
    if half < 64:
        lo_part = lo & np.uint64((1 << half) - 1)
        hi = (hi << np.uint64(64 - half)) | (lo >> np.uint64(half))
        lo = lo_part
    x = np.empty((n8, 2), dtype=np.uint64)
    x[:, 0] = hi
    x[:, 1] = lo
    codes = _expand(x.reshape(-1), 16, width).astype(">u8").view(">u2")
    return codes[:count].astype(np.uint16)


def pack_fixed(codes: np.ndarray, width: int) -> bytes:
    """Pack non-negative ``codes`` (each ``< 2**width``, width <= 32) in ``width`` bits
    each, MSB first, zero-padded to a whole byte."""
    nbytes = _word_bytes(width)
    if width == 8 * nbytes:            # byte-aligned: the big-endian bytes are the stream
        return np.ascontiguousarray(codes, dtype=f">u{nbytes}").tobytes()
    need = -(-codes.size * width // 8)
    if width <= 16:
        grouped = _group_bytes(codes, width)
        return grouped.tobytes() if grouped.size == need else grouped.tobytes()[:need]
    words = np.ascontiguousarray(codes, dtype=f">u{nbytes}")
    bits = np.unpackbits(words.view(np.uint8).reshape(-1, nbytes), axis=1)
    return np.packbits(bits[:, 8 * nbytes - width:]).tobytes()


def unpack_fixed(data: np.ndarray, count: int, width: int) -> np.ndarray:
    """Inverse of :func:`pack_fixed`: ``count`` codes of ``width`` bits, as the smallest
    of uint8, uint16, uint32 that holds them.

    ``data`` is a uint8 array of at least ``ceil(count * width / 8)`` bytes.
    """
    nbytes = _word_bytes(width)
    if width == 8 * nbytes:
        return data[:count * nbytes].view(f">u{nbytes}").astype(f"u{nbytes}")
    if width <= 16:
        return _group_codes(data[:-(-count * width // 8)], count, width)
    bits = np.unpackbits(data, count=count * width).reshape(count, width)
    words = np.packbits(bits, axis=1)                  # (count, ceil(width/8)) bytes
    padded = np.zeros((count, nbytes), dtype=np.uint8)
    padded[:, :words.shape[1]] = words
    return (padded.view(f">u{nbytes}")[:, 0] >> (8 * nbytes - width)).astype(f"u{nbytes}")
