"""QSGD: stochastic quantization (Alistarh et al., NeurIPS 2017) and its bit coding.

Quantizer (docs/codecs.md), per bucket of ``b`` consecutive coordinates with scale
``c`` (the bucket's l2 norm or max-abs, *rounded up* to a float32 times a power of two
so that ``|v_i| <= c`` holds exactly and every level is in ``-s..s``)::

    x_i = s v_i / c,   l_i = floor(x_i + u_i),  u_i ~ U[0, 1)
    Q(v)_i = l_i * (c / s)

``floor(x + u)`` is ``floor(x) + 1`` with probability ``frac(x)``, so ``E[Q(v)] = v``.
For ``x < 0`` it has the same law as the paper's ``-(floor|x| + Bernoulli(frac|x|))``,
so this *is* ``Q_s`` with ``l_i = sgn(v_i) xi_i``, computed without taking signs apart.
Decoding reproduces the quantized values bit for bit (see :meth:`QSGD.dequantize`).

Scales: a bucket's scale is sent as a float32 ``f``; the parameter block carries one
exponent ``e`` for the message and ``c = f * 2**e``. ``e`` puts the largest scale near ``2**64``,
so every finite float64 vector keeps float32 precision in its scales, however small or
large it is (a bare float32 would lose tiny gradients to underflow).

Wire payload after the common header: the 12-byte parameter block (levels, bucket
size, norm, coding, exponent), ``ceil(d/b)`` float32 scales, then either

* **dense**: ``d`` fixed-width fields of ``1 + ceil(log2(s+1))`` bits (sign bit, then
  the level ``|l_i|``), packed MSB first;
* **elias** (sparse): a bit stream that opens with the number ``k`` of nonzeros (the
  Elias delta code of ``k + 1``), then describes each nonzero ``j`` by its gap ``g_j``
  (distance to the previous nonzero, the first one counted from position -1, so
  ``g_j >= 1``), its sign and its level ``|l_j| >= 1``.
  The level is written in **Elias gamma**, the gap in **Elias delta** (``gamma(L+1)``
  then the ``L`` low bits of ``g``, ``L = floor(log2 g)``; coding ``elias``) or
  in **Elias gamma** (coding ``elias-gamma``), whichever makes the message
  shorter. Levels are mostly 1-3, where gamma is shortest (1 or 3 bits). Gaps are
  ~``d/k``: in sparse messages (``s << sqrt d``) delta saves ``~log2(g) - 2 log2
  log2(g)`` bits a gap over gamma (and beats omega below ``2**16``); in dense ones most
  gaps are 1-3, where gamma is shorter (``benchmarks/bits_on_wire.py`` measures the
  Elias family on both).

  The stream is column-split so that it decodes without a sequential scan: section 1
  holds the unary parts (``K`` zeros and a one) of the ``2k`` gamma codewords
  ``gamma(L_j+1) or gamma(g_j), gamma(|l_j|)`` in order; section 2 their ``K``-bit
  tails; section 3 the ``k`` sign bits (1 = negative); section 4 (delta only) the
  ``L_j`` low bits of each gap. Each codeword is an exact Elias codeword, only its
  parts are grouped, so the length is exactly that of the interleaved stream.
  Finding the ``2k`` ones of section 1 gives every codeword length at once, then all
  fields are read with array arithmetic. Zero bits pad the stream to a whole byte.
* **ans**: every coordinate's level magnitude (capped at an escape symbol) coded by
  rANS with a frequency table in the message, then the signs and escaped magnitudes;
  within a few bytes of the table's entropy (layout in :mod:`._ans`). ``auto`` tries
  it where at least 1 coordinate in 16 is nonzero and writes it when it is shortest.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from .._validation import check_choice, check_int
from .base import (HEADER_SIZE, MAX_DIM, Codec, CodecError, check_vector, non_finite_error,
                   split_block)

__all__ = ["QSGD"]


class _LazyModule:
    """Stands for a kernel module until first used: importing numba and loading the
    compiled code costs a fresh process ~0.6 s of CPU, which only QSGD users pay."""

    def __init__(self, alias: str, name: str) -> None:
        self._alias, self._name = alias, name

    def __getattr__(self, attr: str) -> Any:
        import importlib
        module = importlib.import_module(f".{self._name}", __package__)
        globals()[self._alias] = module
        return getattr(module, attr)


_k: Any = _LazyModule("_k", "_kernels")
_q: Any = _LazyModule("_q", "_quantize")
_ans: Any = _LazyModule("_ans", "_ans")
_pcg64: Any = _LazyModule("_pcg64", "_pcg64")
_dense: Any = _LazyModule("_dense", "_dense")

MAX_LEVELS = 2 ** 31 - 1          # a signed level fits int32; dense fields fit 32 bits
# Scale exponents: f * 2**e is exact in float64 for every float32 f when e >= -925
# (the smallest float32, 2**-149, lands on 2**-1074); the largest scale of a message is
# put in [2**63, 2**64], so e <= 1024 - 64.
MIN_EXPONENT, MAX_EXPONENT = -925, 960
TOP_BITS = 64
# Below this sum of squares, squaring may have lost the norm to underflow (a square below
# 2**-1022 is subnormal, below 2**-1074 zero); above it, it may overflow. Such rows are
# rescaled by their largest entry first.
_SMALL_SUMSQ, _LARGE_SUMSQ = 2.0 ** -900, 2.0 ** 900
# Below this largest bucket scale, level values are computed 2**600 larger and scaled
# back at the end (see QSGD._steps).
_TINY_SCALE, _TINY_SHIFT = 2.0 ** -900, 600
_QCHUNK = 1 << 15                 # uniforms drawn per step: they stay in cache
# The parameter block that opens every QSGD payload: levels, bucket size (0: one
# bucket), norm code, coding code, scale exponent (docs/codecs.md).
_PARAMS = struct.Struct("<IIBBh")
# coding="auto" tries rANS when at least 1 coordinate in this many is nonzero: there it
# costs about what Elias does per coordinate; sparser messages keep Elias (gap codes).
_ANS_TRIAL = 16
PARAMS_SIZE = _PARAMS.size
NORMS = {"l2": 1, "max": 2}
CODINGS = {"elias": 1, "dense": 2, "elias-gamma": 3, "ans": 4}
_NORM_NAMES = {v: k for k, v in NORMS.items()}
_CODING_NAMES = {v: k for k, v in CODINGS.items()}


class QSGD(Codec):
    """Stochastic ``s``-level quantizer with Elias or dense bit coding.

    Parameters
    ----------
    levels : int >= 1
        Number of quantization levels ``s``.
    bucket_size : int >= 1 or None
        Quantize consecutive buckets of this many coordinates, each with its own
        scale; ``None`` uses one bucket for the whole vector.
    norm : {"l2", "max"}
        Scale of each bucket: its l2 norm (the paper's) or its max-abs value.
    coding : {"auto", "elias", "dense", "ans"}
        Bit coding; ``"auto"`` writes whichever is shortest for each message (rANS
        is tried when at least 1 coordinate in 16 is nonzero).
    seed : int >= 0 or None
        Seed of the codec's own generator, used when ``encode`` gets no ``rng``:
        every call draws fresh randomness, and equal seeds give equal byte sequences.
    """

    codec_id = "qsgd"

    def __init__(self, levels: int = 16, bucket_size: int | None = None,
                 norm: str = "l2", coding: str = "auto", seed: int | None = None) -> None:
        self.levels = check_int("levels", levels, minimum=1, maximum=MAX_LEVELS)
        self.bucket_size = (None if bucket_size is None else
                            check_int("bucket_size", bucket_size, minimum=1, maximum=MAX_DIM))
        self.norm = check_choice("norm", norm, ("l2", "max"))
        self.coding = check_choice("coding", coding, ("auto", "elias", "dense", "ans"))
        self.seed = None if seed is None else check_int("seed", seed, minimum=0)
        self._rng = np.random.default_rng(self.seed)
        self.dense_width = 1 + self.levels.bit_length()      # sign + ceil(log2(s + 1))

    def variance_bound(self, d: int) -> float:
        """``q`` with ``E||Q(v) - v||^2 <= q ||v||^2`` for ``v`` in R^d.

        With ``b`` the bucket size (``d`` without buckets, capped at ``d``):

        ``min(b/(4 s^2), sqrt(b)/s)`` for either norm. Per bucket with scale ``c``
        (``||v_b||`` for the l2 norm, ``max|v_i| <= ||v_b||`` for the max norm),
        coordinate i has variance ``(c/s)^2 p(1-p)`` with ``p = frac(s|v_i|/c)``;
        ``p(1-p) <= 1/4`` gives ``b c^2/(4 s^2) <= b/(4s^2) ||v_b||^2``, and
        ``p(1-p) <= p <= s|v_i|/c`` gives ``(c/s) ||v_b||_1 <= sqrt(b)/s ||v_b||^2``.
        Summing over buckets keeps ``q``. The QSGD paper's Lemma 3.1 states
        ``min(b/s^2, sqrt(b)/s)``; its first term is 4x looser than the same argument
        gives, and the default step (``ray_relu.settings``) pays for every bit of
        slack in ``q``: at d = 1e4, s = 200 the paper's 0.5 against 0.0625 here costs
        28 % more iterations with a quantized downlink (docs/codecs.md).

        The stored scale exceeds the exact norm by at most a float32 rounding
        (relative ``2**-23``), so where the bound is attained the error can exceed it
        by a relative ``2**-22``.
        """
        d = check_int("d", d, minimum=1)
        b = self._bucket(d)
        s = self.levels
        return float(min(b / (4 * s ** 2), b ** 0.5 / s))

    def max_message_bytes(self, d: int) -> int | None:
        """The dense message's length for ``coding="dense"`` and ``"auto"`` (which
        never writes a longer one); None for ``"elias"`` and ``"ans"``, whose length
        depends on the levels drawn."""
        d = check_int("d", d, minimum=1, maximum=MAX_DIM)
        if self.coding not in ("dense", "auto"):
            return None
        return (HEADER_SIZE + PARAMS_SIZE + 4 * -(-d // self._bucket(d))
                + self._dense_body_bytes(d))

    def _dense_body_bytes(self, d: int) -> int:
        """Length of the dense coding's body: ``d`` fields of ``dense_width`` bits."""
        return -(-d * self.dense_width // 8)

    # -- buckets ----------------------------------------------------------------------
    def _bucket(self, d: int) -> int:
        return d if self.bucket_size is None else min(self.bucket_size, d)

    def _per_bucket(self, x: np.ndarray, per: np.ndarray) -> None:
        """In place ``x[i] *= per[bucket(i)]``."""
        d = x.size
        b = self._bucket(d)
        nfull, tail = divmod(d, b)
        if nfull == 1 and not tail:
            x *= per[0]
            return
        x[:nfull * b].reshape(nfull, b)[...] *= per[:nfull, None]
        if tail:
            x[nfull * b:] *= per[nfull]

    def _bucket_stats(self, v: np.ndarray) -> np.ndarray:
        """Each bucket's l2 norm or max-abs (float64; NaN or inf for non-finite input)."""
        x = np.asarray(v, dtype=np.float64)
        d = x.size
        b = self._bucket(d)
        nfull, tail = divmod(d, b)
        rows = [x[:nfull * b].reshape(nfull, b)]
        if tail:
            rows.append(x[nfull * b:].reshape(1, tail))
        if self.norm == "l2":
            stats = [_row_norms(r) for r in rows]
        else:           # numpy's, for its sign of zero: a -0.0 scale is on the wire
            stats = [np.maximum(r.max(axis=1), -r.min(axis=1)) for r in rows]
        return stats[0] if len(stats) == 1 else np.concatenate(stats)

    # -- quantization ---------------------------------------------------------------
    def _scales(self, v: np.ndarray) -> tuple[np.ndarray, int, float, np.ndarray]:
        """(float32 scale ``f`` of each bucket, the message exponent ``e``, and ``pre``
        and the per-bucket factors of :func:`_quantize.quantize_chunk`): the true scale
        ``f * 2**e`` is the bucket statistic rounded up (so it bounds every ``|x_i|``)."""
        with np.errstate(over="ignore", invalid="ignore"):
            stat = self._bucket_stats(v)
        f32, exponent, pre, factor, err = _q.scales(stat, self.levels)
        if err == 1:
            if not np.isfinite(v).all():
                raise non_finite_error("vec", v)
            raise ValueError(f"vec has a bucket {self.norm} norm beyond the float64 range; "
                             f"allowed: vectors whose bucket norms are finite")
        if err == 2:                     # only within 2**-24 of the float64 maximum
            raise ValueError(f"vec has a bucket {self.norm} norm too close to the float64 "
                             f"maximum; allowed: norms below about 1.7e308")
        return f32, exponent, pre, factor

    def _levels(self, v: np.ndarray, rng: np.random.Generator
                ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
        """(float32 scales, exponent, positions int64 and signed levels int64 of the
        nonzero levels ``floor(s v / c + u)``, clamped to ``-s..s``).

        The uniforms are ``rng.random(d)``'s, in order, in cache-sized slices, each
        consumed by the compiled quantizer right away. For numpy's default bit
        generator (PCG64) the kernel computes the stream itself (:mod:`._pcg64`) and
        leaves ``rng`` where ``random(d)`` would have.
        """
        src = _k.readonly(np.ascontiguousarray(v))     # float32 is read as it is
        f32, exponent, pre, factor = self._scales(src)
        d = v.size
        idx = np.empty(d + 8, dtype=np.int64)  # untouched pages beyond the nonzeros
        lev = np.empty(d + 8, dtype=np.int64)  # cost nothing
        u = np.empty(min(d, _QCHUNK))
        hit = np.empty(-(-u.size // 8) * 8, dtype=np.uint8)
        bsize = self._bucket(d)
        state = _pcg64.state_of(rng)
        if state is not None:           # numpy's default: drawn in the kernel, same stream
            count = _q.quantize_pcg64(src, state, bsize, pre, factor, self.levels,
                                      u, hit, idx, lev)
            _pcg64.store(rng, state)
            return f32, exponent, idx[:count], lev[:count]
        count = 0
        for lo in range(0, d, _QCHUNK):
            chunk = u[:min(_QCHUNK, d - lo)]
            rng.random(out=chunk)
            count = _q.quantize_chunk(src, chunk, lo, bsize, pre, factor, self.levels,
                                      hit, idx, lev, count)
        return f32, exponent, idx[:count], lev[:count]

    def quantize(self, vec: np.ndarray, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Quantize ``vec``: ``(scales float64 (n_buckets,), signed levels int32 (d,))``.

        The scales are exactly those the message carries (a float32 times ``2**e``).
        ``dequantize(*quantize(v, rng))`` is exactly what ``decode(encode(v, rng=rng))``
        returns for a generator in the same state.
        """
        v = check_vector(vec)
        f32, exponent, idx, lev = self._levels(v, self._rng if rng is None else rng)
        levels = np.zeros(v.size, dtype=np.int32)
        levels[idx] = lev
        return _full_scales(f32, exponent), levels

    def dequantize(self, scales: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """Quantized values ``levels * (scale / s)`` (float64), each bucket's scale."""
        levels = np.asarray(levels)
        scales = np.asarray(scales, dtype=np.float64)
        if levels.ndim != 1 or levels.size < 1:
            raise ValueError(f"levels must be a non-empty 1-D array, got shape {levels.shape}")
        nb = -(-levels.size // self._bucket(levels.size))
        if scales.shape != (nb,):
            raise ValueError(f"scales must have shape ({nb},) for d={levels.size}, "
                             f"got {scales.shape}")
        return self._apply_steps(levels, scales)

    def _apply_steps(self, levels: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """Signed levels times the value of one level in their bucket, as float64."""
        out = levels.astype(np.float64)
        steps, factor = self._steps(scales)
        self._per_bucket(out, steps)
        if factor != 1:
            out *= factor
        return out

    def _steps(self, scales: np.ndarray) -> tuple[np.ndarray, float]:
        """Value of one level in each bucket: ``step * factor`` with ``step = scale / s``
        and ``factor = 1``, except for tiny scales, where ``scale / s`` could lose bits
        to float64 subnormals: there ``step`` is ``2**600`` times larger and
        ``factor = 2**-600`` is applied last (rounding once, at the very end)."""
        top = float(scales.max())
        if top == 0 or top >= _TINY_SCALE:
            return scales / float(self.levels), 1.0
        return np.ldexp(scales, _TINY_SHIFT) / float(self.levels), 2.0 ** -_TINY_SHIFT

    # -- encoding -------------------------------------------------------------------
    def encode(self, vec: np.ndarray, *, rng: np.random.Generator | None = None) -> bytes:
        """Quantize and bit-code ``vec`` (1-D, finite); see the module docstring."""
        return self._encode(check_vector(vec), rng)[0]

    def encode_with_value(self, vec: np.ndarray, *, rng: np.random.Generator | None = None
                          ) -> tuple[bytes, np.ndarray]:
        """:meth:`encode`, and the quantized vector its message decodes to, placed from
        the levels with the decoders' own arithmetic instead of read back from the bits."""
        v = check_vector(vec)
        message, f32, exponent, idx, lev = self._encode(v, rng)
        steps, factor = self._steps(_full_scales(f32, exponent))
        value = np.zeros(v.size)
        _k.place_values(idx, lev, self._bucket(v.size), steps, factor, value)
        return message, value

    def _encode(self, v: np.ndarray, rng: np.random.Generator | None
                ) -> tuple[bytes, np.ndarray, int, np.ndarray, np.ndarray]:
        """The message, and the float32 scales, exponent, positions and levels in it."""
        d = v.size
        coding = self.coding
        f32, exponent, idx, lev = self._levels(v, self._rng if rng is None else rng)
        k = idx.size
        body = None
        if coding == "ans" or (coding == "auto" and k * _ANS_TRIAL >= d):
            body = _ans.ans_write(idx, lev, k, d)
        if coding in ("auto", "elias"):
            delta_bits, gamma_bits, delta_unary, gamma_unary = _k.elias_sizes(idx, lev, k)
            gamma_gaps = gamma_bits < delta_bits
            nbits = min(gamma_bits, delta_bits)
        if coding == "auto":
            dense_bytes = self._dense_body_bytes(d)
            shortest = min(-(-nbits // 8), dense_bytes)
            if body is not None and body.size < shortest:
                coding = "ans"
            else:
                coding = "elias" if -(-nbits // 8) < dense_bytes else "dense"
        if coding == "elias":
            body = _k.elias_write(idx, lev, k, gamma_gaps,
                                  gamma_unary if gamma_gaps else delta_unary, nbits)
            coding = "elias-gamma" if gamma_gaps else "elias"
        elif coding == "dense":
            body = _dense.dense_write(idx, lev, k, d, self.dense_width)
        params = _PARAMS.pack(self.levels, self.bucket_size or 0, NORMS[self.norm],
                              CODINGS[coding], exponent)
        return (self.pack_message(d, params, f32.astype("<f4").tobytes(), body),
                f32, exponent, idx, lev)

    # -- decoding -------------------------------------------------------------------
    def decode(self, buf: bytes | bytearray | memoryview, *,
               max_dim: int | None = None) -> np.ndarray:
        """Decode a message to the exact quantized values (float64, length d).

        ``max_dim`` rejects messages announcing more coordinates (see
        :meth:`Codec.decode`).
        """
        d, payload = self.read_message(buf, max_dim)
        (levels, bucket, norm_code, coding_code, exponent), payload = split_block(
            payload, _PARAMS, "qsgd parameter block")
        if levels < 1:
            raise CodecError(f"qsgd levels={levels} in the message; allowed: >= 1")
        for field, code, names in (("norm", norm_code, _NORM_NAMES),
                                   ("coding", coding_code, _CODING_NAMES)):
            if code not in names:
                raise CodecError(f"unknown qsgd {field} code {code}; allowed: "
                                 + ", ".join(f"{c} ({name})" for c, name in names.items()))
        norm, coding = _NORM_NAMES[norm_code], _CODING_NAMES[coding_code]
        if (self.levels, self.bucket_size or 0, self.norm) != (levels, bucket, norm):
            raise CodecError(f"message was encoded with qsgd(levels={levels}, "
                             f"bucket_size={bucket or None}, norm={norm!r}), cannot "
                             f"decode it with {self!r}")
        if not MIN_EXPONENT <= exponent <= MAX_EXPONENT:
            raise CodecError(f"scale exponent {exponent} out of range "
                             f"{MIN_EXPONENT}..{MAX_EXPONENT}")
        b = self._bucket(d)
        nb = -(-d // b)
        if payload.size < 4 * nb:
            raise CodecError(f"payload of {payload.size} bytes cannot hold the {nb} "
                             f"float32 bucket scales")
        f32 = payload[:4 * nb].view("<f4").astype(np.float32)
        if not (np.isfinite(f32).all() and (f32 >= 0).all()):
            raise CodecError("bucket scales must be finite and >= 0")
        with np.errstate(over="ignore"):
            scales = _full_scales(f32, exponent)
        if not np.isfinite(scales).all():
            raise CodecError(f"bucket scale overflows with exponent {exponent}")
        body = _k.readonly(np.ascontiguousarray(payload[4 * nb:]))
        steps, factor = self._steps(scales)
        if coding == "dense":
            width = self.dense_width
            need = self._dense_body_bytes(d)
            if body.size != need:
                raise CodecError(f"dense qsgd body for d={d} at {width} bits per "
                                 f"coordinate must be {need} bytes, got {body.size}")
            out = np.empty(d, dtype=np.float64)
            err = _dense.dense_read(body, d, width, self.levels, b, steps, factor, out)
        elif coding == "ans":
            out = np.empty(d, dtype=np.float64)
            err = _ans.ans_read(body, d, self.levels, b, steps, factor, out)
        else:
            out = np.zeros(d, dtype=np.float64)
            err = _k.elias_read(body, d, self.levels, coding == "elias-gamma", b,
                                steps, factor, out)
        if err[0]:
            raise CodecError(_error_message(*err, d=d, s=self.levels, nbytes=body.size))
        return out


def _error_message(code: int, detail: int, d: int, s: int, nbytes: int) -> str:
    """Words for a decoding kernel's error code (``_kernels.E_*``)."""
    return {
        _k.E_COUNT_INVALID: "sparse qsgd body does not start with a valid nonzero count",
        _k.E_COUNT_SHORT: "sparse qsgd body too short for its nonzero count",
        _k.E_COUNT_IMPOSSIBLE: f"sparse qsgd body announces {detail} nonzeros, impossible "
                               f"for d={d} in {8 * nbytes} bits",
        _k.E_EMPTY_TRAILING: "trailing bits after an empty Elias stream",
        _k.E_RAN_OUT_UNARY: "Elias bit stream ran out in the codeword length section",
        _k.E_TAIL_TOO_LONG: f"Elias codeword with {detail}-bit tail: value out of range",
        _k.E_RAN_OUT_TAILS: "Elias bit stream ran out in the codeword tail section",
        _k.E_LEVEL: f"level {detail} exceeds levels={s}",
        _k.E_GAP_TAIL: f"gap with {detail} low bits: out of range",
        _k.E_RAN_OUT_GAPS: "Elias bit stream ran out in the gap section",
        _k.E_TRAILING_BYTES: f"{detail} trailing bytes after the qsgd bit stream",
        _k.E_PADDING: "nonzero padding bits after the qsgd bit stream",
        _k.E_PAST_D: f"gaps run to position {detail}, past d={d}",
        _k.E_NEGATIVE_ZERO: "dense qsgd body holds a negative zero level",
        _ans.E_ANS_TABLE: "ans qsgd body has a malformed frequency table",
        _ans.E_ANS_STATE: "ans qsgd body starts with a coder state below 2**16",
        _ans.E_ANS_RAN_OUT: "ans qsgd body ran out in the coder's words",
        _ans.E_ANS_END: "ans qsgd body does not end in the coder's initial state",
        _ans.E_RAN_OUT_EXTRAS: "ans qsgd body ran out in the sign and escape section",
    }[code]


def _full_scales(f32: np.ndarray, exponent: int) -> np.ndarray:
    """Exact float64 scales ``f32 * 2**exponent``."""
    return np.ldexp(f32.astype(np.float64), exponent)


def _row_norms(rows: np.ndarray) -> np.ndarray:
    """l2 norm of each row of a 2-D float64 array, without underflow or overflow."""
    sumsq = np.einsum("ij,ij->i", rows, rows)
    norms = np.sqrt(sumsq)
    if sumsq.min() >= _SMALL_SUMSQ and sumsq.max() <= _LARGE_SUMSQ:
        return norms                             # NaN fails these too
    redo = np.flatnonzero(~((sumsq >= _SMALL_SUMSQ) & (sumsq <= _LARGE_SUMSQ)))
    if redo.size:                                # rare: rescale by the largest entry
        sub = np.abs(rows[redo])
        peak = sub.max(axis=1)
        live = (peak > 0) & np.isfinite(peak)
        scaled = sub[live] / peak[live, None]
        norms[redo[live]] = peak[live] * np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
        norms[redo[~live]] = np.where(peak[~live] == 0, 0.0, np.nan)
    return norms
