"""numpy's PCG64 uniform stream, compiled: the very doubles ``Generator.random`` draws.

QSGD draws one uniform per coordinate, so drawing is most of what encoding costs.
numpy's ``Generator.random`` reaches the bit generator through a function pointer per
draw, and PCG64's 128-bit multiply-add makes every draw wait for the one before. Here
64 lanes walk the same stream interleaved: lane ``k`` starts ``k + 1`` steps ahead
and every lane jumps 64 steps at once (the LCG map ``x -> M x + c`` composed 64
times). The lanes advance 8 at a time in vector registers (:func:`_advance_group`,
written in LLVM IR: numba's loops do not vectorize a 128-bit multiply). The output is
numpy's exactly, double for double (tests compare the streams), so the bytes of every
message stay what the format spec and the codec corpus say.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["fill", "state_of", "store"]

_U64 = np.uint64
_MASK = (1 << 64) - 1
_MULTIPLIER = 0x2360ED051FC65DA4_4385DF649FCCF645  # numpy's PCG64 (XSL-RR 128/64)
_MUL_HI, _MUL_LO = _U64(_MULTIPLIER >> 64), _U64(_MULTIPLIER & _MASK)
_LANES = 64     # independent multiply chains (measured, 1e6 draws: numpy 2.1 ms; 16
                # scalar lanes 1.05 ms; 64 lanes in 8-wide vectors 0.7 ms)
_WIDTH = 8      # lanes per vector: one 512-bit register (two 256-bit ones on AVX2)
# The jump of _LANES steps, x -> A x + B c, for the stream's increment c:
# A = M**L and B = 1 + M + ... + M**(L-1), mod 2**128.
_JUMP_A = pow(_MULTIPLIER, _LANES, 1 << 128)
_JUMP_B = sum(pow(_MULTIPLIER, i, 1 << 128) for i in range(_LANES)) % (1 << 128)
_JUMP_A_HI, _JUMP_A_LO = _U64(_JUMP_A >> 64), _U64(_JUMP_A & _MASK)
_JUMP_B_HI, _JUMP_B_LO = _U64(_JUMP_B >> 64), _U64(_JUMP_B & _MASK)
_jit = dict(cache=True, nogil=True, error_model="numpy")


@intrinsic
def _mulhi(typingctx, a, b):
    """High word of the 128-bit product of two uint64 (one ``mul`` on x86-64)."""
    def codegen(context, builder, signature, args):
        wide = ir.IntType(128)
        prod = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        return builder.trunc(builder.lshr(prod, ir.Constant(wide, 64)), ir.IntType(64))
    return types.uint64(types.uint64, types.uint64), codegen


@njit(inline="always")
def _mul(ahi, alo, bhi, blo):
    """``a * b mod 2**128`` on (high, low) word pairs."""
    return _mulhi(alo, blo) + alo * bhi + ahi * blo, alo * blo


@njit(inline="always")
def _add(ahi, alo, bhi, blo):
    """``a + b mod 2**128`` on (high, low) word pairs."""
    lo = alo + blo
    return ahi + bhi + _U64(lo < alo), lo


@njit(inline="always")
def _step(hi, lo, mhi, mlo, chi, clo):
    """One LCG step ``state * m + c``."""
    phi, plo = _mul(hi, lo, mhi, mlo)
    return _add(phi, plo, chi, clo)


@njit(inline="always")
def _uniform(hi, lo):
    """The XSL-RR output of a state, as ``Generator.random`` turns it into a double:
    its top 53 bits times 2**-53."""
    x = hi ^ lo
    rot = hi >> _U64(58)
    out = (x >> rot) | (x << ((_U64(64) - rot) & _U64(63)))
    return np.float64(np.int64(out >> _U64(11))) * (1.0 / 9007199254740992.0)


_V64 = ir.VectorType(ir.IntType(64), _WIDTH)
_VF64 = ir.VectorType(ir.DoubleType(), _WIDTH)


def _splat(value: int) -> ir.Constant:
    return ir.Constant(_V64, [ir.Constant(ir.IntType(64), value)] * _WIDTH)


def _broadcast(b: ir.IRBuilder, scalar: ir.Value) -> ir.Value:
    """A vector with ``scalar`` (a runtime uint64) in every lane."""
    first = b.insert_element(ir.Constant(_V64, ir.Undefined), scalar, ir.IntType(32)(0))
    return b.shuffle_vector(first, first, ir.Constant(ir.VectorType(ir.IntType(32), _WIDTH),
                                                      [0] * _WIDTH))


def _mul_wide(b: ir.IRBuilder, x: ir.Value, y: int) -> tuple[ir.Value, ir.Value]:
    """(high, low) words of ``x * y`` for a vector ``x`` and a constant ``y``, from four
    32 x 32-bit products (one vector instruction each). ``y`` must be a constant:
    LLVM folds the same pattern on a variable back into scalar 128-bit multiplies."""
    m32, s32 = _splat(0xFFFFFFFF), _splat(32)
    x0, x1 = b.and_(x, m32), b.lshr(x, s32)
    y0, y1 = _splat(y & 0xFFFFFFFF), _splat(y >> 32)
    p00, p01, p10, p11 = b.mul(x0, y0), b.mul(x0, y1), b.mul(x1, y0), b.mul(x1, y1)
    mid = b.add(b.add(b.lshr(p00, s32), b.and_(p01, m32)), b.and_(p10, m32))
    high = b.add(b.add(p11, b.lshr(p01, s32)), b.add(b.lshr(p10, s32), b.lshr(mid, s32)))
    return high, b.or_(b.and_(p00, m32), b.shl(mid, s32))


@intrinsic
def _advance_group(typingctx, hi, lo, k, out, j, chi, clo):
    """Lanes ``k .. k + 7`` (states ``hi[k:], lo[k:]``): write their uniforms to
    ``out[j:j + 8]``, then jump each by ``_LANES`` steps (``state * A + (chi, clo)``).
    No bounds checks: the caller keeps ``k + 8 <= len(hi)`` and ``j + 8 <= len(out)``."""
    def codegen(context, builder, sig, args):
        b = builder
        hi_a, lo_a, k, out_a, j, chi, clo = args

        def at(array_type, array, index, vector_type):
            data = context.make_array(array_type)(context, b, array).data
            return b.bitcast(b.gep(data, [index]), vector_type.as_pointer())

        p_hi, p_lo = at(sig.args[0], hi_a, k, _V64), at(sig.args[1], lo_a, k, _V64)
        p_out = at(sig.args[3], out_a, j, _VF64)
        h, l = b.load(p_hi, align=8), b.load(p_lo, align=8)
        # XSL-RR: rotate (hi ^ lo) right by hi's top 6 bits; the top 53 bits / 2**53
        x, rot = b.xor(h, l), b.lshr(h, _splat(58))
        x = b.or_(b.lshr(x, rot), b.shl(x, b.and_(b.sub(_splat(64), rot), _splat(63))))
        unit = ir.Constant(_VF64, [ir.Constant(ir.DoubleType(), 2.0 ** -53)] * _WIDTH)
        b.store(b.fmul(b.sitofp(b.lshr(x, _splat(11)), _VF64), unit), p_out, align=8)
        # state * A + c, mod 2**128, with c = (chi, clo) the same in every lane
        c_hi, c_lo = _broadcast(b, chi), _broadcast(b, clo)
        a_hi, a_lo = int(_JUMP_A_HI), int(_JUMP_A_LO)
        p_high, p_low = _mul_wide(b, l, a_lo)
        p_high = b.add(p_high, b.add(b.mul(l, _splat(a_hi)), b.mul(h, _splat(a_lo))))
        new_lo = b.add(p_low, c_lo)
        carry = b.zext(b.icmp_unsigned("<", new_lo, p_low), _V64)
        b.store(b.add(b.add(p_high, c_hi), carry), p_hi, align=8)
        b.store(new_lo, p_lo, align=8)
        return context.get_dummy_value()
    return types.void(hi, lo, k, out, j, chi, clo), codegen


@njit(types.void(types.uint64[::1], types.float64[::1]), **_jit)
def fill(state, out):
    """Fill ``out`` with the next ``len(out)`` uniforms of the stream ``state``
    (``[state high, state low, increment high, increment low]``) and advance it."""
    chi, clo = state[2], state[3]
    hi, lo = np.empty(_LANES, dtype=_U64), np.empty(_LANES, dtype=_U64)
    h, l = state[0], state[1]
    for k in range(_LANES):                         # lane k: k + 1 steps ahead
        h, l = _step(h, l, _MUL_HI, _MUL_LO, chi, clo)
        hi[k], lo[k] = h, l
    jump_chi, jump_clo = _mul(chi, clo, _JUMP_B_HI, _JUMP_B_LO)
    end_hi, end_lo = state[0], state[1]             # the state after the last draw made
    n = out.size
    j = 0
    while j + _LANES <= n:
        for k in range(0, _LANES, _WIDTH):
            _advance_group(hi, lo, k, out, j + k, jump_chi, jump_clo)
        j += _LANES
        end_hi, end_lo = _step(end_hi, end_lo, _JUMP_A_HI, _JUMP_A_LO, jump_chi, jump_clo)
    for k in range(n - j):
        out[j + k] = _uniform(hi[k], lo[k])
        end_hi, end_lo = hi[k], lo[k]
    state[0], state[1] = end_hi, end_lo


def state_of(rng: np.random.Generator) -> np.ndarray | None:
    """``rng``'s PCG64 state as :func:`fill` takes it, or None for other bit
    generators and other objects with a ``random`` method (those draw themselves)."""
    if type(getattr(rng, "bit_generator", None)) is not np.random.PCG64:
        return None
    st = rng.bit_generator.state["state"]
    return np.array([st["state"] >> 64, st["state"] & _MASK, st["inc"] >> 64,
                     st["inc"] & _MASK], dtype=_U64)


def store(rng: np.random.Generator, state: np.ndarray) -> None:
    """Move ``rng`` to ``state`` (after :func:`fill`): its next draws continue the
    stream exactly where numpy's own ``random`` would have left it."""
    full = rng.bit_generator.state
    full["state"]["state"] = (int(state[0]) << 64) | int(state[1])
    rng.bit_generator.state = full
