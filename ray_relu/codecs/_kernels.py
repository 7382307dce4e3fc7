"""Compiled (numba) kernels of the QSGD codec: Elias bit coding, the bit-level helpers
the dense (:mod:`._dense`) and rANS (:mod:`._ans`) coders share, and the rules, types
and cache set-up every kernel module (:mod:`._quantize` too) follows.

The bit layout is the one specified in :mod:`ray_relu.codecs.qsgd`; this module only
makes it fast. Rules that keep the bytes the same on every node:

* no ``fastmath`` (LLVM then never fuses a multiply and an add, nor reorders sums), and
  every float step is the same single operation, in the same order, as the numpy
  formulation the format was first written with;
* the uniforms are numpy's Generator's: drawn by numpy outside, or by :mod:`._pcg64`,
  which computes PCG64's stream double for double.

Decoders get hostile bytes: numba does not check bounds, so every read position is
validated against the stream length before the read, and each kernel reports a
malformed stream with an error code (``E_*``) instead of raising.

Compiled eagerly for explicit signatures and cached on disk (``cache=True``), so a
fresh process (a Ray worker) loads machine code instead of compiling it.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numba
import numpy as np
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["fallback_cache_dir", "readonly", "elias_sizes", "elias_write", "elias_read",
           "MAX_TAIL_BITS"]

# Every integer Elias-coded is < 2**32 (gaps <= d <= 2**31, levels < 2**31, the count
# + 1 <= 2**31 + 1), so no codeword tail is longer than this.
MAX_TAIL_BITS = 32

# error codes of the decoders (0: fine); qsgd.py words the messages
(E_COUNT_INVALID, E_COUNT_SHORT, E_COUNT_IMPOSSIBLE, E_EMPTY_TRAILING, E_RAN_OUT_UNARY,
 E_TAIL_TOO_LONG, E_RAN_OUT_TAILS, E_LEVEL, E_GAP_TAIL, E_RAN_OUT_GAPS,
 E_TRAILING_BYTES, E_PADDING, E_PAST_D, E_NEGATIVE_ZERO) = range(1, 15)


def fallback_cache_dir() -> str | None:
    """A writable directory for numba's cache when neither the package's
    ``__pycache__`` nor the user cache (``~/.cache``) is writable (a read-only install,
    a home-less service user), else None: numba's own choice then works."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    pycache = os.path.join(here, "__pycache__")
    if os.access(pycache if os.path.isdir(pycache) else here, os.W_OK):
        return None
    if os.access(os.path.join(os.path.expanduser("~"), ".cache"), os.W_OK):
        return None
    return os.path.join(tempfile.gettempdir(), f"ray_relu-numba-{os.getuid()}")


numba.config.CACHE_DIR = fallback_cache_dir() or numba.config.CACHE_DIR
if sys.byteorder != "little":           # _to_bytes lays words out by byte-swapping
    raise ImportError("ray_relu's QSGD kernels need a little-endian CPU")
_U64 = np.uint64
_jit = dict(cache=True, nogil=True, error_model="numpy")
# Input arrays may be read-only (np.frombuffer of bytes); writable ones convert to these.
_ro_u8, _ro_f32, _ro_f64 = (types.Array(t, 1, "C", readonly=True)
                            for t in (types.uint8, types.float32, types.float64))
_i64, _f64, _f64a, _i64a, _u8a = (types.int64, types.float64, types.float64[::1],
                                  types.int64[::1], types.uint8[::1])
_err = types.UniTuple(types.int64, 2)


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``: the kernels' input type, matched exactly, so that
    numba dispatches without its slow search for a compatible signature."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


@intrinsic
def _clz(typingctx, x):
    """Leading zeros of a uint64 (LLVM ctlz)."""
    def codegen(context, builder, signature, args):
        return builder.ctlz(args[0], context.get_constant(types.boolean, False))
    return types.uint64(types.uint64), codegen


@njit(inline="always")
def _bit_length(n):
    """``floor(log2 n) + 1`` (0 for 0) of a non-negative int64."""
    return 64 - np.int64(_clz(_U64(n)))


# --------------------------------------------------------------------------- bit writing
@njit(inline="always")
def _put(words, pos, value, n):
    """OR ``value`` (< 2**n, n <= 57) into the MSB-first stream ``words`` at bit ``pos``."""
    if n == 0:
        return
    w = pos >> 6
    end = (pos & 63) + n
    val = _U64(value)
    if end <= 64:
        words[w] |= val << _U64(64 - end)
    else:
        words[w] |= val >> _U64(end - 64)
        words[w + 1] |= val << _U64(128 - end)


@intrinsic
def _bswap(typingctx, x):
    """A uint64 with its bytes reversed (LLVM bswap)."""
    def codegen(context, builder, signature, args):
        return builder.bswap(args[0])
    return types.uint64(types.uint64), codegen


@njit(inline="always")
def _to_bytes(words, nbytes):
    """The first ``nbytes`` bytes of ``words``, most significant byte first (the
    words are byte-swapped in place: x86-64 and arm64 are little-endian)."""
    for w in range(words.size):
        words[w] = _bswap(words[w])
    return words.view(np.uint8)[:nbytes]


@njit(inline="always")
def _new_words(nbits):
    return np.zeros((nbits + 63) // 64 + 1, dtype=_U64)


@njit(inline="always")
def _delta_length(n):
    tail = _bit_length(n) - 1
    return tail + 2 * _bit_length(tail + 1) - 1


@njit("UniTuple(int64, 4)(int64[::1], int64[::1], int64)", **_jit)
def elias_sizes(idx, lev, k):
    """Bits of the sparse stream of the ``k`` nonzeros with delta-coded and with
    gamma-coded gaps, and the length of its unary section (less its ``2k`` ones) in
    each case: ``(delta_bits, gamma_bits, delta_unary, gamma_unary)``."""
    tails = gap_unary = level_unary = 0
    prev = -1
    for j in range(k):
        tail = _bit_length(idx[j] - prev) - 1     # L = floor(log2 gap)
        prev = idx[j]
        tails += tail
        gap_unary += _bit_length(tail + 1) - 1    # K of gamma(L + 1)
        level_unary += _bit_length(abs(lev[j])) - 1
    delta_unary = gap_unary + level_unary
    gamma_unary = tails + level_unary             # gamma(gap) has K = L
    count = _delta_length(k + 1)                  # the count k, as delta(k + 1)
    return (count + 2 * delta_unary + 3 * k + tails, count + 2 * gamma_unary + 3 * k,
            delta_unary, gamma_unary)


@njit(inline="always")
def _push(words, acc, held, w, value, n):
    """Append ``n <= 33`` bits (``value < 2**n``) to a stream kept in registers as
    (``acc``: its last ``held < 64`` bits, ``w``: the word they belong to); each word
    it fills is OR-ed into ``words`` (streams share their boundary words)."""
    if held + n < 64:
        return (acc << _U64(n)) | _U64(value), held + n, w
    room = 64 - held                            # 31 <= held, so 1 <= room <= 33
    words[w] |= (acc << _U64(room)) | (_U64(value) >> _U64(n - room))
    held = n - room
    return _U64(value) & ((_U64(1) << _U64(held)) - _U64(1)), held, w + 1


@njit(inline="always")
def _flush(words, acc, held, w):
    if held:
        words[w] |= acc << _U64(64 - held)


@njit(inline="always")
def _push_delta(words, acc, held, w, n):
    """Append the Elias delta code of ``n >= 1``: gamma(L + 1), then the L low bits."""
    tail = _bit_length(n) - 1
    unary = _bit_length(tail + 1) - 1
    acc, held, w = _push(words, acc, held, w, 1, unary + 1)
    acc, held, w = _push(words, acc, held, w, tail + 1 - (1 << unary), unary)
    return _push(words, acc, held, w, n - (1 << tail), tail)


@njit("uint8[::1](int64[::1], int64[::1], int64, boolean, int64, int64)", **_jit)
def elias_write(idx, lev, k, gamma_gaps, unary_sum, nbits):
    """The sparse stream: ``delta(k + 1)``, then the four sections of the spec, each
    written as its own stream (from the offsets the sizes give)."""
    words = _new_words(nbits)
    a0, h0, w0 = _push_delta(words, _U64(0), 0, 0, k + 1)
    p1 = _delta_length(k + 1) + 2 * k + unary_sum   # the unary parts follow the count
    p2 = p1 + unary_sum
    p3 = p2 + k
    a1, h1, w1 = _U64(0), p1 & 63, p1 >> 6      # gamma tails
    a2, h2, w2 = _U64(0), p2 & 63, p2 >> 6      # signs
    a3, h3, w3 = _U64(0), p3 & 63, p3 >> 6      # delta: low bits of the gaps
    prev = -1
    for j in range(k):
        gap = idx[j] - prev
        prev = idx[j]
        tail = _bit_length(gap) - 1
        if gamma_gaps:                          # gamma(gap)
            a0, h0, w0 = _push(words, a0, h0, w0, 1, tail + 1)
            a1, h1, w1 = _push(words, a1, h1, w1, gap - (1 << tail), tail)
        else:                                   # delta(gap): gamma(L + 1), then L bits
            m = tail + 1
            km = _bit_length(m) - 1
            a0, h0, w0 = _push(words, a0, h0, w0, 1, km + 1)
            a1, h1, w1 = _push(words, a1, h1, w1, m - (1 << km), km)
            a3, h3, w3 = _push(words, a3, h3, w3, gap - (1 << tail), tail)
        level = lev[j]
        mag = abs(level)
        km = _bit_length(mag) - 1               # gamma(|level|)
        a0, h0, w0 = _push(words, a0, h0, w0, 1, km + 1)
        a1, h1, w1 = _push(words, a1, h1, w1, mag - (1 << km), km)
        a2, h2, w2 = _push(words, a2, h2, w2, 1 if level < 0 else 0, 1)
    _flush(words, a0, h0, w0)
    _flush(words, a1, h1, w1)
    _flush(words, a2, h2, w2)
    _flush(words, a3, h3, w3)
    return _to_bytes(words, (nbits + 7) // 8)


# --------------------------------------------------------------------------- bit reading
@njit(inline="always")
def _stream_words(body):
    """``body`` as big-endian 64-bit words, then two zero words: a read of up to 64
    bits from any bit offset below ``8 len(body)`` stays inside the array."""
    n = body.size
    words = np.zeros(n // 8 + 2, dtype=_U64)
    for w in range(n // 8):
        x = _U64(0)
        for i in range(8):
            x = (x << _U64(8)) | _U64(body[8 * w + i])
        words[w] = x
    for i in range(n - n % 8, n):
        words[n // 8] |= _U64(body[i]) << _U64(56 - 8 * (i % 8))
    return words


@njit(inline="always")
def _window(words, pos):
    """The 64 bits of the stream from bit ``pos`` on (zero past its end)."""
    w = pos >> 6
    off = _U64(pos & 63)
    # (x >> 1) >> (63 - off): no shift by 64 when off = 0
    return (words[w] << off) | ((words[w + 1] >> _U64(1)) >> (_U64(63) - off))


@njit(inline="always")
def _get(words, pos, n):
    """The ``n``-bit field (n <= 64) at bit ``pos``; the caller checked it is inside."""
    if n == 0:
        return np.int64(0)
    return np.int64(_window(words, pos) >> _U64(64 - n))


@njit(inline="always")
def _trailing(words, nbytes, pos):
    """0 if the stream ends at bit ``pos`` (zero padding to the byte), else an error."""
    if (pos + 7) // 8 != nbytes:
        return E_TRAILING_BYTES
    if pos < 8 * nbytes and _get(words, pos, 8 * nbytes - pos) != 0:
        return E_PADDING
    return 0


@njit(inline="always")
def _trailing_error(words, nbytes, pos):
    """``_trailing`` as a decoder's (error, detail): the detail of trailing bytes is
    their number."""
    err = _trailing(words, nbytes, pos)
    return err, (0 if err in (0, E_PADDING) else nbytes - (pos + 7) // 8)


@njit(inline="always")
def _read_delta(words, pos, max_unary):
    """The Elias delta code at bit ``pos``: (its value, its length in bits), or
    (-1, 0) when its gamma part opens with more than ``max_unary`` zeros."""
    head = _window(words, pos)
    unary = np.int64(_clz(head)) if head else 64
    if unary > max_unary:
        return np.int64(-1), np.int64(0)
    tail = np.int64(head >> _U64(63 - 2 * unary)) - 1
    value = (np.int64(1) << tail) | _get(words, pos + 2 * unary + 1, tail)
    return value, 2 * unary + 1 + tail


@njit(inline="always")
def _value(level, step, factor):
    """A decoded coordinate: ``level * step`` (then the tiny-scale factor), the very
    float operations numpy did when the format was first written."""
    val = np.float64(level) * step
    if factor != 1.0:
        val *= factor
    return val


@njit(types.void(_i64a, _i64a, _i64, _f64a, _f64, _f64a), **_jit)
def place_values(idx, lev, bsize, steps, factor, out):
    """``out[idx[j]] = `` the decoded value of level ``lev[j]``, as the readers write it
    (the encoder's copy of what its message decodes to)."""
    for j in range(idx.size):
        out[idx[j]] = _value(lev[j], steps[idx[j] // bsize], factor)


@njit(_err(_ro_u8, _i64, _i64, types.boolean, _i64, _f64a, _f64, _f64a), **_jit)
def elias_read(body, d, s, gamma_gaps, bsize, steps, factor, out):
    """Decode a sparse stream into the zeroed ``out``; (error code or 0, detail)."""
    nbytes = body.size
    nbits = 8 * nbytes
    buf = _stream_words(body)
    # the count: delta(k + 1) within the first 64 bits
    value, start = _read_delta(buf, 0, 5)       # L + 1 <= 33: k + 1 < 2**32
    if value < 0:
        return E_COUNT_INVALID, 0
    if start > nbits or start > 64:
        return E_COUNT_SHORT, 0
    count = value - 1
    if count > d or 3 * count > nbits - start:  # >= 3 bits per nonzero
        return E_COUNT_IMPOSSIBLE, count
    if count == 0:
        return (E_EMPTY_TRAILING if _trailing(buf, nbytes, start) else 0), 0
    # section 1: the 2k unary parts give every codeword length; each 64-bit window
    # yields all the ones it holds (a short dependency chain per codeword)
    ks = np.empty(2 * count, dtype=np.int64)
    pos = start
    kmax = ksum = run = j = 0
    while j < 2 * count:
        if pos >= nbits:
            return E_RAN_OUT_UNARY, 0
        w = _window(buf, pos)                   # zero past the stream's end
        used = 0
        while w and j < 2 * count:
            z = np.int64(_clz(w))
            run += z
            ks[j] = run
            ksum += run
            kmax = max(kmax, run)
            run = 0
            j += 1
            used += z + 1
            w = (w << _U64(z)) << _U64(1)       # no shift by 64
        if j < 2 * count:
            run += 64 - used
            used = 64
        pos += used
    if kmax >= MAX_TAIL_BITS:
        return E_TAIL_TOO_LONG, kmax
    if pos + ksum + count > nbits:
        return E_RAN_OUT_TAILS, 0
    # sections 2-4 in one pass: values are written as they come (inside out), and the
    # checks are reported after it, in a fixed order (the format's own)
    p1, p2 = pos, pos + ksum                    # tails, signs
    p3 = p2 + count                             # delta: low bits of the gaps
    level_max = gap_tail_max = 0
    lows_fit = True
    i = -1
    b, bucket_end = 0, bsize                    # the bucket of i, without a division
    for j in range(count):
        k0, k1 = ks[2 * j], ks[2 * j + 1]
        v0 = (np.int64(1) << k0) | _get(buf, p1, k0)
        level = (np.int64(1) << k1) | _get(buf, p1 + k0, k1)
        p1 += k0 + k1
        level_max = max(level_max, level)
        if gamma_gaps:
            gap = v0
        else:
            tail = v0 - 1
            gap_tail_max = max(gap_tail_max, tail)
            lows_fit &= tail < MAX_TAIL_BITS and p3 + tail <= nbits
            if not lows_fit:
                continue                        # an error below; nothing more to write
            gap = (np.int64(1) << tail) | _get(buf, p3, tail)
            p3 += tail
        if _get(buf, p2, 1):
            level = -level
        p2 += 1
        if i >= d:
            continue                            # an error below
        i += gap
        if i < d:
            while i >= bucket_end:              # at most d / bsize steps in all
                b += 1
                bucket_end += bsize
            out[i] = _value(level, steps[b], factor)
    if level_max > s:
        return E_LEVEL, level_max
    if gap_tail_max >= MAX_TAIL_BITS:
        return E_GAP_TAIL, gap_tail_max
    if not lows_fit:
        return E_RAN_OUT_GAPS, 0
    err, detail = _trailing_error(buf, nbytes, p3)
    if err:
        return err, detail
    if i >= d:
        return E_PAST_D, i
    return 0, 0
