"""Compiled (numba) kernels of QSGD's dense coding: fixed-width sign-magnitude fields.

The layout is the one specified in :mod:`ray_relu.codecs.qsgd`; the rules that keep
the bytes the same on every node, and the decoders' defences against hostile bytes,
are those of :mod:`ray_relu.codecs._kernels`, whose helpers this module shares.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._kernels import (E_LEVEL, E_NEGATIVE_ZERO, E_PADDING, E_TRAILING_BYTES, _U64, _err,
                       _f64, _f64a, _i64, _jit, _new_words, _put, _ro_u8, _to_bytes, _value)

__all__ = ["dense_write", "dense_read"]


@njit("uint8[::1](int64[::1], int64[::1], int64, int64, int64)", **_jit)
def dense_write(idx, lev, k, d, width):
    """``d`` sign-magnitude fields of ``width`` bits, zero except at the nonzeros."""
    nbits = d * width
    words = _new_words(nbits)
    sign = np.int64(1) << (width - 1)
    for j in range(k):
        level = lev[j]
        _put(words, idx[j] * width, abs(level) | (sign if level < 0 else 0), width)
    return _to_bytes(words, (nbits + 7) // 8)


@njit(inline="always")
def _dense_field(body, i, width):
    """Field ``i`` of a dense stream of ``width <= 8`` bits a field (inside ``body``)."""
    pos = i * width
    b = pos >> 3
    two = np.int64(body[b]) << 8                 # the field spans at most two bytes
    if b + 1 < body.size:
        two |= np.int64(body[b + 1])
    return (two >> (16 - (pos & 7) - width)) & ((1 << width) - 1)


@njit(inline="always")
def _dense_table_read(body, d, width, bsize, steps, factor, bad, out):
    """Fields of ``width <= 8`` bits by table: every code's value is computed once
    per bucket (with :func:`_value`, so the same doubles), and eight fields are
    ``width`` whole bytes, one word; returns whether any code is flagged in ``bad``.
    Inlined with a constant ``width``, the shifts and the byte loop unroll."""
    field = (1 << width) - 1
    mask = (1 << (width - 1)) - 1
    table = np.empty(1 << width)
    flagged = np.uint8(0)
    for lo in range(0, d, bsize):
        hi = min(d, lo + bsize)
        step = steps[lo // bsize]
        for code in range(1 << width):
            mag = code & mask
            table[code] = _value(-mag if code > mask else mag, step, factor)
        i = lo
        while i < hi and (i & 7 or i + 8 > hi):   # up to the first whole group
            code = _dense_field(body, i, width)
            out[i] = table[code]
            flagged |= bad[code]
            i += 1
        while i + 8 <= hi:
            at = (i >> 3) * width
            word = np.int64(0)
            for b in range(width):
                word = (word << 8) | np.int64(body[at + b])
            seg = out[i:i + 8]
            for t in range(8):
                code = (word >> ((7 - t) * width)) & field
                seg[t] = table[code]
                flagged |= bad[code]
            i += 8
        while i < hi:                             # the bucket's last fields
            code = _dense_field(body, i, width)
            out[i] = table[code]
            flagged |= bad[code]
            i += 1
    return flagged != 0


@njit(inline="always")
def _dense_read_bits(body, d, width, bsize, steps, factor, out):
    """Any width, through a bit accumulator byte by byte; returns (largest magnitude,
    whether a field is -0)."""
    field = _U64((1 << width) - 1)
    mask = (np.int64(1) << (width - 1)) - 1
    mag_max = 0
    negative_zero = False
    acc = _U64(0)                               # bits not yet read, at the bottom
    held = p = 0
    for lo in range(0, d, bsize):
        step = steps[lo // bsize]
        seg = out[lo:min(d, lo + bsize)]
        for i in range(seg.size):
            while held < width:                 # d * width bits: p stays < nbytes
                acc = (acc << _U64(8)) | _U64(body[p])
                p += 1
                held += 8
            held -= width
            code = np.int64((acc >> _U64(held)) & field)
            level = code & mask
            mag_max = max(mag_max, level)
            if code > mask:                     # the sign bit
                negative_zero |= level == 0
                level = -level
            seg[i] = _value(level, step, factor)
    return mag_max, negative_zero


@njit(_err(_ro_u8, _i64, _i64, _i64, _i64, _f64a, _f64, _f64a), **_jit)
def dense_read(body, d, width, s, bsize, steps, factor, out):
    """Decode ``d`` dense fields (``body`` is exactly ``ceil(d width / 8)`` bytes) into
    ``out``; (error code or 0, detail)."""
    nbytes = body.size
    if nbytes != (d * width + 7) // 8:
        return E_TRAILING_BYTES, 0
    pad = 8 * nbytes - d * width
    if body[nbytes - 1] & ((1 << pad) - 1):
        return E_PADDING, 0
    mag_max, negative_zero = 0, False
    if width <= 8 and bsize >= 4 << width:      # a table pays for itself per bucket
        mask = (1 << (width - 1)) - 1
        bad = np.zeros(1 << width, dtype=np.uint8)
        for code in range(1 << width):          # level > s, or -0
            bad[code] = ((code & mask) > s) | (code == mask + 1)
        # one inlined copy per width, so that each has its shifts as constants
        if width == 2:
            flagged = _dense_table_read(body, d, 2, bsize, steps, factor, bad, out)
        elif width == 3:
            flagged = _dense_table_read(body, d, 3, bsize, steps, factor, bad, out)
        elif width == 4:
            flagged = _dense_table_read(body, d, 4, bsize, steps, factor, bad, out)
        elif width == 5:
            flagged = _dense_table_read(body, d, 5, bsize, steps, factor, bad, out)
        elif width == 6:
            flagged = _dense_table_read(body, d, 6, bsize, steps, factor, bad, out)
        elif width == 7:
            flagged = _dense_table_read(body, d, 7, bsize, steps, factor, bad, out)
        else:
            flagged = _dense_table_read(body, d, 8, bsize, steps, factor, bad, out)
        if flagged:                             # hostile bytes: find what to report
            mag_max, negative_zero = _dense_read_bits(body, d, width, bsize, steps,
                                                      factor, out)
    else:
        mag_max, negative_zero = _dense_read_bits(body, d, width, bsize, steps, factor,
                                                  out)
    if mag_max > s:
        return E_LEVEL, mag_max
    if negative_zero:
        return E_NEGATIVE_ZERO, 0
    return 0, 0
