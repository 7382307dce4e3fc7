"""Compiled (numba) QSGD quantizer: each bucket's scale, then the levels
``floor((v * pre) * factor + u)`` of every coordinate, keeping the nonzero ones.

Same rules as :mod:`._kernels` (no ``fastmath``, every float step the numpy
formulation's single operation, eager signatures cached on disk); the uniforms are
numpy's Generator's, drawn by numpy outside or by :mod:`._pcg64` inside.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from ._kernels import _U64, _f64, _f64a, _i64, _i64a, _jit, _ro_f32, _ro_f64, _u8a
from ._pcg64 import fill
from .qsgd import MIN_EXPONENT, TOP_BITS

__all__ = ["scales", "quantize_chunk", "quantize_pcg64"]

_F64_MAX = np.finfo(np.float64).max


@intrinsic
def _ctz(typingctx, x):
    """Trailing zeros of a nonzero uint64 (LLVM cttz)."""
    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], context.get_constant(types.boolean, True))
    return types.uint64(types.uint64), codegen


# --------------------------------------------------------------------------- scales
@njit(types.Tuple((types.float32[::1], _i64, _f64, _f64a, _i64))(_f64a, _i64), **_jit)
def scales(stat, s):
    """(float32 scales ``f``, exponent ``e``, ``pre``, per-bucket factors, error) from
    each bucket's norm: ``f * 2**e`` is the norm rounded up, ``e`` puts the largest
    near 2**64, and a level is ``floor((v * pre) * factor + u)`` (see
    :func:`quantize_chunk`). Error 1: a norm is not finite; 2: a rounded-up norm
    overflows. Powers of two are exact, so ``x * 2.0**e`` is numpy's ``ldexp``."""
    nb = stat.size
    f32 = np.empty(nb, dtype=np.float32)
    fac = np.empty(nb)
    top = 0.0
    for b in range(nb):
        if not stat[b] <= _F64_MAX:
            return f32, 0, 1.0, fac, 1
        top = max(top, stat[b])
    exponent = 0 if top == 0 else max(math.frexp(top)[1] - TOP_BITS, MIN_EXPONENT)
    down, up = math.ldexp(1.0, -exponent), math.ldexp(1.0, exponent)
    finite = True
    for b in range(nb):
        f = np.float32(stat[b] * down)
        for _ in range(2):                      # round up: one float32 step suffices
            if np.float64(f) * up < stat[b]:
                f = np.nextafter(f, np.float32(np.inf))
        f32[b] = f
        if not np.float64(f) * up <= _F64_MAX:
            return f32, 0, 1.0, fac, 2
        fac[b] = (s / np.float64(f) if f > 0 else 0.0) * down
        finite &= fac[b] <= _F64_MAX
    if finite:
        return f32, exponent, 1.0, fac, 0       # x * 1.0 is exact: one multiply
    for b in range(nb):                         # tiny scales: two exact-enough steps
        fac[b] = s / np.float64(f32[b]) if f32[b] > 0 else 0.0
    return f32, exponent, down, fac, 0


# --------------------------------------------------------------------------- quantizer
@njit(inline="always")
def _flag_nonzero(v, u, pre, f, hit):
    """``u = (v * pre) * f + u`` and ``hit = floor(u) != 0``, branch-free: vectorized.
    (Slices, so that indices start at 0: numba then drops its negative-index checks.)"""
    for j in range(u.size):
        y = (np.float64(v[j]) * pre) * f + u[j]
        u[j] = y
        hit[j] = (y < 0.0) | (y >= 1.0)


@njit([_i64(vec, _f64a, _i64, _i64, _f64, _f64a, _i64, _u8a, _i64a, _i64a, _i64)
       for vec in (_ro_f32, _ro_f64)], **_jit)
def quantize_chunk(v, u, lo, bsize, pre, fac, s, hit, idx, lev, count):
    """Levels ``floor((v_i * pre) * fac[bucket] + u)`` of ``v[lo:lo + len(u)]``,
    clamped to ``-s..s``; the nonzero ones are appended to ``idx``/``lev`` from
    ``count`` on (they need 8 spare entries). Returns the new count. Overwrites the
    uniforms ``u``; ``hit`` is scratch of ``>= len(u)`` bytes, a multiple of 8.

    ``pre`` is 1 (an exact no-op) except for tiny scales, where the scaling takes
    two steps; each is one float64 rounding, as in the numpy formulation.
    """
    n = u.size
    i = 0
    while i < n:
        b = (lo + i) // bsize
        end = min(n, (b + 1) * bsize - lo)
        _flag_nonzero(v[lo + i:lo + end], u[i:end], pre, fac[b], hit[i:end])
        i = end
    words = hit.view(np.uint64)     # then visit only the flags set, 8 bytes at a time:
    for w in range(n // 8):         # a flag is bit 0 of its byte, found by counting zeros
        flags = words[w]
        while flags:
            j = 8 * w + np.int64(_ctz(flags) >> _U64(3))
            idx[count] = lo + j
            lev[count] = np.int64(max(min(np.floor(u[j]), s), -s))  # a rare +-(s + 1)
            count += 1
            flags &= flags - _U64(1)
    for j in range(n - n % 8, n):   # the last few: written always, counted if flagged
        idx[count] = lo + j
        lev[count] = np.int64(max(min(np.floor(u[j]), s), -s))
        count += hit[j]
    return count


@njit([_i64(vec, types.uint64[::1], _i64, _f64, _f64a, _i64, _f64a, _u8a, _i64a, _i64a)
       for vec in (_ro_f32, _ro_f64)], **_jit)
def quantize_pcg64(v, state, bsize, pre, fac, s, u, hit, idx, lev):
    """:func:`quantize_chunk` over all of ``v``, drawing each chunk's uniforms (as many
    as ``u`` holds) from the PCG64 stream ``state`` (:func:`_pcg64.fill`, which
    advances it); returns the count of nonzero levels."""
    count = 0
    for lo in range(0, v.size, u.size):
        chunk = u[:min(u.size, v.size - lo)]
        fill(state, chunk)
        count = quantize_chunk(v, chunk, lo, bsize, pre, fac, s, hit, idx, lev, count)
    return count
