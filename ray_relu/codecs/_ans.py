"""Compiled (numba) rANS coding of QSGD levels: the ``ans`` body of docs/codecs.md.

Elias codes assume a fixed level distribution (gamma spends 1 bit on a 1, 3 on a 2 or
3); the levels of a gradient follow its own. rANS (Duda's range asymmetric numeral
systems) codes each coordinate's level magnitude with a frequency table sent in the
message, within a few bytes of the table's entropy: on Gaussian-like gradients at
``s ~ sqrt(d)`` that is about 20 % fewer bytes than the shorter Elias stream.

Body layout (each part starts on a byte)::

    table   6 bits n - 1 (n = symbols 0..n-1), then delta(f + 1) for each
            frequency f (they sum to 2**PROB_BITS; the last is >= 1), zero padding
    states  the final states of the two interleaved coders (coordinate i uses coder
            i % 2), uint32 little-endian each, then their 16-bit words (little-endian)
            in the order the decoder reads them
    extras  one sign bit per nonzero level (1 = negative), then for each escaped
            magnitude m >= ESCAPE the Elias gamma code of m - ESCAPE + 1; zero padding

Symbol ``min(|l_i|, ESCAPE)`` of every coordinate ``i = 0..d-1`` is coded, in order.
Each state lives in ``[2**16, 2**32)`` and moves 16 bits at a time; the decoder must end
both in the encoder's initial state ``2**16``, which checks the whole stream.

Decoders get hostile bytes: every read is checked against the body's length first.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

from ._kernels import (E_LEVEL, MAX_TAIL_BITS, _U64, _bit_length, _clz, _delta_length,
                       _err, _f64, _f64a, _flush, _get, _i64, _i64a, _jit, _new_words,
                       _push, _push_delta, _read_delta, _ro_u8, _stream_words, _to_bytes,
                       _trailing_error, _value, _window)

__all__ = ["PROB_BITS", "ESCAPE", "ans_write", "ans_read"]

PROB_BITS = 14                  # frequencies sum to 2**14
ESCAPE = 63                     # symbols 0..62 are magnitudes; 63: magnitude >= 63
_NSYM = ESCAPE + 1
_LOW = 1 << 16                  # state interval [2**16, 2**32)
_TOTAL = 1 << PROB_BITS
_TABLE_HEAD = 6                 # bits of n - 1

# error codes after _kernels' (qsgd.py words the messages)
E_ANS_TABLE, E_ANS_STATE, E_ANS_RAN_OUT, E_ANS_END, E_RAN_OUT_EXTRAS = range(15, 20)


@njit(inline="always")
def _normalize(counts, n, d):
    """Frequencies summing to ``2**PROB_BITS``: each used symbol gets >= 1, and the
    rounding slack goes to the most frequent one (>= 2**PROB_BITS / 64 before, so it
    stays >= 1: at most 64 symbols were rounded up)."""
    freq = np.zeros(_NSYM, dtype=np.int64)
    total = 0
    top = 0
    for t in range(n):
        if counts[t]:
            freq[t] = max(1, counts[t] * _TOTAL // d)
            total += freq[t]
            if counts[t] > counts[top]:
                top = t
    freq[top] += _TOTAL - total
    return freq


@njit(inline="always")
def _symbol(level):
    return min(abs(level), ESCAPE)


@njit(inline="always")
def _code(syms, freq, start, d):
    """Run the two coders over the ``d`` symbols: (their final states, their words in
    the order the decoder reads them)."""
    # coordinate i uses coder i % 2: two independent dependency chains run twice as
    # fast as one. The coders run backwards, so that the decoder runs forwards.
    f64, c64 = freq.astype(np.uint64), start.astype(np.uint64)
    out = np.empty(d + 1, dtype=np.uint16)      # each symbol emits <= 1 word
    nw = 0
    x0 = x1 = _U64(_LOW)
    top = d - 1 if d % 2 == 0 else d            # odd d: start with coder 0 alone
    for i in range(top, -1, -2):                # pairs (i - 1, i), i odd, from the end
        if i < d:                               # (the rANS step, written out twice:
            t = syms[i]                         # numba keeps both states in registers)
            f = f64[t]
            if x1 >= f << _U64(32 - PROB_BITS): # x would leave [2**16, 2**32)
                out[nw] = np.uint16(x1 & _U64(0xFFFF))
                nw += 1
                x1 >>= _U64(16)
            x1 = ((x1 // f) << _U64(PROB_BITS)) + x1 % f + c64[t]
        t = syms[i - 1]
        f = f64[t]
        if x0 >= f << _U64(32 - PROB_BITS):
            out[nw] = np.uint16(x0 & _U64(0xFFFF))
            nw += 1
            x0 >>= _U64(16)
        x0 = ((x0 // f) << _U64(PROB_BITS)) + x0 % f + c64[t]
    return x0, x1, out[:nw][::-1]


@njit(inline="always")
def _table_bytes(freq, n):
    """6 bits ``n - 1``, then the Elias delta code of each ``f + 1``; zero padded."""
    nbits = _TABLE_HEAD
    for t in range(n):
        nbits += _delta_length(freq[t] + 1)
    words = _new_words(nbits)
    acc, held, w = _push(words, _U64(0), 0, 0, n - 1, _TABLE_HEAD)
    for t in range(n):
        acc, held, w = _push_delta(words, acc, held, w, freq[t] + 1)
    _flush(words, acc, held, w)
    return _to_bytes(words, (nbits + 7) // 8)


@njit(inline="always")
def _extras_bytes(lev, k, nbits):
    """The signs of the ``k`` nonzero levels, then the Elias gamma code of each escaped
    magnitude less ``ESCAPE - 1``; zero padded."""
    words = _new_words(nbits)
    acc, held, w = _U64(0), 0, 0
    for j in range(k):
        acc, held, w = _push(words, acc, held, w, 1 if lev[j] < 0 else 0, 1)
    for j in range(k):
        if _symbol(lev[j]) == ESCAPE:           # gamma(m): K zeros, then m in K + 1 bits
            m = abs(lev[j]) - ESCAPE + 1
            km = _bit_length(m) - 1
            acc, held, w = _push(words, acc, held, w, 0, km)
            acc, held, w = _push(words, acc, held, w, m, km + 1)
    _flush(words, acc, held, w)
    return _to_bytes(words, (nbits + 7) // 8)


@njit(types.uint8[::1](_i64a, _i64a, _i64, _i64), **_jit)
def ans_write(idx, lev, k, d):
    """The ``ans`` body of the ``k`` nonzero levels ``lev`` at positions ``idx``."""
    counts = np.zeros(_NSYM, dtype=np.int64)
    counts[0] = d - k
    syms = np.zeros(d + 1, dtype=np.uint8)      # (a zero past the end when d is odd)
    extra_bits = k                              # the sign bits, then the escapes
    for j in range(k):
        sym = _symbol(lev[j])
        syms[idx[j]] = sym
        counts[sym] += 1
        if sym == ESCAPE:
            extra_bits += 2 * _bit_length(abs(lev[j]) - ESCAPE + 1) - 1
    n = _NSYM
    while counts[n - 1] == 0:
        n -= 1
    freq = _normalize(counts, n, d)
    start = np.zeros(_NSYM, dtype=np.int64)
    for t in range(1, n):
        start[t] = start[t - 1] + freq[t - 1]
    x0, x1, words = _code(syms, freq, start, d)
    table = _table_bytes(freq, n)
    extras = _extras_bytes(lev, k, extra_bits)
    body = np.empty(table.size + 8 + 2 * words.size + extras.size, dtype=np.uint8)
    body[:table.size] = table
    p = table.size
    for b in range(4):                          # the states, little-endian
        body[p + b] = np.uint8((x0 >> _U64(8 * b)) & _U64(0xFF))
        body[p + 4 + b] = np.uint8((x1 >> _U64(8 * b)) & _U64(0xFF))
    p += 8
    for word in words:                          # the words, little-endian
        body[p] = np.uint8(word & 0xFF)
        body[p + 1] = np.uint8(word >> 8)
        p += 2
    body[p:] = extras
    return body


@njit(inline="always")
def _read_table(buf, nbits, freq):
    """Fill ``freq`` from the table; (error or 0, the table's length in bits)."""
    if nbits < _TABLE_HEAD:
        return E_ANS_TABLE, 0
    n = _get(buf, 0, _TABLE_HEAD) + 1
    pos = _TABLE_HEAD
    total = 0
    for t in range(n):
        value, length = _read_delta(buf, pos, 3)  # delta(f + 1) <= delta(2**14 + 1)
        if value < 0 or value > _TOTAL + 1 or pos + length > nbits:
            return E_ANS_TABLE, 0
        freq[t] = value - 1
        total += freq[t]
        pos += length
    if total != _TOTAL or freq[n - 1] == 0:
        return E_ANS_TABLE, 0
    return 0, pos


@njit(inline="always")
def _decode(body, p, freq, d):
    """Run the two coders back from their states at byte ``p``: (error or 0, the
    position after their words, the ``d`` symbols)."""
    syms = np.empty(d + 1, dtype=np.uint8)
    nbytes = body.size
    if p + 8 > nbytes:
        return E_ANS_RAN_OUT, p, syms
    x0 = x1 = _U64(0)
    for b in range(4):
        x0 |= _U64(body[p + b]) << _U64(8 * b)
        x1 |= _U64(body[p + 4 + b]) << _U64(8 * b)
    p += 8
    if x0 < _U64(_LOW) or x1 < _U64(_LOW):
        return E_ANS_STATE, p, syms
    start = np.zeros(_NSYM + 1, dtype=np.int64)
    slot_symbol = np.empty(_TOTAL, dtype=np.uint8)
    for t in range(_NSYM):
        start[t + 1] = start[t] + freq[t]
        slot_symbol[start[t]:start[t + 1]] = t
    f64, c64 = freq.astype(np.uint64), start.astype(np.uint64)
    mask = _U64(_TOTAL - 1)
    last = nbytes - 1                           # a word needs p < last
    for i in range(0, d, 2):                    # pairs (i, i + 1): the step written
        slot = x0 & mask                        # out twice keeps both states in
        t = slot_symbol[slot]                   # registers
        x0 = f64[t] * (x0 >> _U64(PROB_BITS)) + slot - c64[t]
        if x0 < _U64(_LOW):                     # x >= 4 here: one word restores it
            if p >= last:
                return E_ANS_RAN_OUT, p, syms
            x0 = (x0 << _U64(16)) | _U64(body[p]) | (_U64(body[p + 1]) << _U64(8))
            p += 2
        syms[i] = t
        if i + 1 < d:
            slot = x1 & mask
            t = slot_symbol[slot]
            x1 = f64[t] * (x1 >> _U64(PROB_BITS)) + slot - c64[t]
            if x1 < _U64(_LOW):
                if p >= last:
                    return E_ANS_RAN_OUT, p, syms
                x1 = (x1 << _U64(16)) | _U64(body[p]) | (_U64(body[p + 1]) << _U64(8))
                p += 2
            syms[i + 1] = t
    if x0 != _U64(_LOW) or x1 != _U64(_LOW):
        return E_ANS_END, p, syms
    return 0, p, syms


@njit(_err(_ro_u8, _i64, _i64, _i64, _f64a, _f64, _f64a), **_jit)
def ans_read(body, d, s, bsize, steps, factor, out):
    """Decode an ``ans`` body into ``out``; (error code or 0, detail)."""
    nbytes = body.size
    freq = np.zeros(_NSYM, dtype=np.int64)
    err, table_bits = _read_table(_stream_words(body[:min(nbytes, 256)]),
                                  8 * min(nbytes, 256), freq)
    if err:
        return err, 0
    err, p, syms = _decode(body, (table_bits + 7) // 8, freq, d)
    if err:
        return err, 0
    k = 0
    for i in range(d):
        k += syms[i] != 0
    extras = body[p:]
    nbits = 8 * extras.size
    if k > nbits:
        return E_RAN_OUT_EXTRAS, 0
    buf = _stream_words(extras)
    sp, ep = 0, k                               # sign bits, escapes
    level_max = 0
    b, bucket_end = 0, bsize
    for i in range(d):
        while i >= bucket_end:
            b += 1
            bucket_end += bsize
        sym = syms[i]
        if sym == 0:
            out[i] = 0.0
            continue
        level = np.int64(sym)
        if sym == ESCAPE:
            head = _window(buf, ep)
            unary = np.int64(_clz(head)) if head else 64
            if unary >= MAX_TAIL_BITS or ep + 2 * unary + 1 > nbits:
                return E_RAN_OUT_EXTRAS, 0
            level = _get(buf, ep + unary, unary + 1) + ESCAPE - 1
            ep += 2 * unary + 1
        level_max = max(level_max, level)
        if _get(buf, sp, 1):
            level = -level
        sp += 1
        out[i] = _value(level, steps[b], factor)
    if level_max > s:
        return E_LEVEL, level_max
    return _trailing_error(buf, extras.size, ep)
