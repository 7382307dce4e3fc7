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

Scales: a bucket's scale is sent as a float32 ``f``; the header carries one exponent
``e`` for the message and ``c = f * 2**e``. ``e`` puts the largest scale near ``2**64``,
so every finite float64 vector keeps float32 precision in its scales, however small or
large it is (a bare float32 would lose tiny gradients to underflow).

Wire payload after the common header: ``ceil(d/b)`` float32 scales, then either

* **dense**: ``d`` fixed-width fields of ``1 + ceil(log2(s+1))`` bits (sign bit, then
  the level ``|l_i|``), packed MSB first;
* **elias** (sparse): a bit stream that opens with the number ``k`` of nonzeros (the
  Elias delta code of ``k + 1``), then describes each nonzero ``j`` by its gap ``g_j``
  (distance to the previous nonzero, the first one counted from position -1, so
  ``g_j >= 1``), its sign and its level ``|l_j| >= 1``.
  The level is written in **Elias gamma**, the gap in **Elias delta** (``gamma(L+1)``
  then the ``L`` low bits of ``g``, ``L = floor(log2 g)``; header coding ``elias``) or
  in **Elias gamma** (header coding ``elias-gamma``), whichever makes the message
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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_choice, check_int
from .base import Codec, CodecError, Header, MAX_DIM, check_vector, non_finite_error
from .bitcoding import (CHUNK, MAX_TAIL_BITS, bit_length, delta_length, new_words,
                        or_bits, or_fields,
                        pack_fixed, unpack_fields, unpack_fixed, words_to_bytes)

__all__ = ["QSGD"]

MAX_LEVELS = 2 ** 31 - 1          # a signed level fits int32; dense fields fit 32 bits
# Scale exponents: f * 2**e is exact in float64 for every float32 f when e >= -925
# (the smallest float32, 2**-149, lands on 2**-1074); the largest scale of a message is
# put in [2**63, 2**64], so e <= 1024 - 64.
MIN_EXPONENT, MAX_EXPONENT = -925, 960
_TOP_BITS = 64
# Below this sum of squares, squaring may have lost the norm to underflow (a square below
# 2**-1022 is subnormal, below 2**-1074 zero); above it, it may overflow. Such rows are
# rescaled by their largest entry first.
_SMALL_SUMSQ, _LARGE_SUMSQ = 2.0 ** -900, 2.0 ** 900
# Below this largest bucket scale, level values are computed 2**600 larger and scaled
# back at the end (see QSGD._steps).
_TINY_SCALE, _TINY_SHIFT = 2.0 ** -900, 600
_QCHUNK = 1 << 15                 # coordinates per step of the quantizer's inner loop
# K = floor(log2 n) of the small numbers n = L + 1 <= 32 coded by gamma for the gaps
_SMALL_UNARY = np.array([0] + [n.bit_length() - 1 for n in range(1, 33)], dtype=np.int8)


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
    coding : {"auto", "elias", "dense"}
        Bit coding; ``"auto"`` writes whichever is shorter for each message.
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
        self.coding = check_choice("coding", coding, ("auto", "elias", "dense"))
        self.seed = None if seed is None else check_int("seed", seed, minimum=0)
        self._rng = np.random.default_rng(self.seed)
        self.dense_width = 1 + self.levels.bit_length()      # sign + ceil(log2(s + 1))

    def _params(self) -> dict[str, Any]:
        return {"levels": self.levels, "bucket_size": self.bucket_size,
                "norm": self.norm, "coding": self.coding, "seed": self.seed}

    def variance_bound(self, d: int) -> float:
        """``q`` with ``E||Q(v) - v||^2 <= q ||v||^2`` for ``v`` in R^d.

        With ``b`` the bucket size (``d`` without buckets, capped at ``d``):

        * l2 norm: ``min(b/s^2, sqrt(b)/s)``, the QSGD paper's Lemma 3.1, per bucket.
        * max norm: ``min(b/(4 s^2), sqrt(b)/s)``. Derivation, per bucket with scale
          ``c = max|v_i| <= ||v_b||``: coordinate i has variance
          ``(c/s)^2 p(1-p)`` with ``p = frac(s|v_i|/c)``; ``p(1-p) <= 1/4`` gives
          ``b c^2/(4 s^2) <= b/(4s^2) ||v_b||^2``, and ``p(1-p) <= p <= s|v_i|/c`` gives
          ``(c/s) ||v_b||_1 <= (c/s) sqrt(b) ||v_b|| <= sqrt(b)/s ||v_b||^2``.
          (The same argument gives ``b/(4s^2)`` for the l2 norm too; the paper's
          looser constant is reported there.) Summing over buckets keeps ``q``.

        The stored scale exceeds the exact norm by at most a float32 rounding
        (relative ``2**-23``), which the bound absorbs for all practical purposes.
        """
        d = check_int("d", d, minimum=1)
        b = self._bucket(d)
        s = self.levels
        first = b / s ** 2 if self.norm == "l2" else b / (4 * s ** 2)
        return float(min(first, b ** 0.5 / s))

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

    def _bucket_stats(self, x: np.ndarray) -> np.ndarray:
        """Each bucket's l2 norm or max-abs (float64; NaN or inf for non-finite input)."""
        d = x.size
        b = self._bucket(d)
        nfull, tail = divmod(d, b)
        rows = [x[:nfull * b].reshape(nfull, b)]
        if tail:
            rows.append(x[nfull * b:].reshape(1, tail))
        if self.norm == "l2":
            stats = [_row_norms(r) for r in rows]
        else:
            stats = [np.maximum(r.max(axis=1), -r.min(axis=1)) for r in rows]
        return stats[0] if len(stats) == 1 else np.concatenate(stats)

    # -- quantization ---------------------------------------------------------------
    def _scales(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Float32 scale of each bucket and the message exponent ``e``: the true scale
        ``f * 2**e`` is the bucket statistic rounded up (so it bounds every ``|x_i|``)."""
        with np.errstate(over="ignore", invalid="ignore"):
            stat = self._bucket_stats(x)
        if not np.isfinite(stat).all():
            if not np.isfinite(x).all():
                raise non_finite_error("vec", x)
            raise ValueError(f"vec has a bucket {self.norm} norm beyond the float64 range; "
                             f"allowed: vectors whose bucket norms are finite")
        top = float(stat.max())
        exponent = 0 if top == 0 else max(int(np.frexp(top)[1]) - _TOP_BITS, MIN_EXPONENT)
        f32 = np.ldexp(stat, -exponent).astype(np.float32)
        with np.errstate(over="ignore"):
            for _ in range(2):            # round up (a float32 step is always enough)
                low = _full_scales(f32, exponent) < stat
                if not low.any():
                    break
                f32[low] = np.nextafter(f32[low], np.float32(np.inf))
            full = _full_scales(f32, exponent)
        if not np.isfinite(full).all():   # only within 2**-24 of the float64 maximum
            raise ValueError(f"vec has a bucket {self.norm} norm too close to the float64 "
                             f"maximum; allowed: norms below about 1.7e308")
        return f32, exponent

    def _levels(self, v: np.ndarray, rng: np.random.Generator, nonzero: bool = False
                ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray | None]:
        """(float32 scales, exponent, signed levels ``floor(s v / c + u)`` as float64,
        and with ``nonzero`` the positions of the nonzero levels).

        The levels are in ``-s-1..s+1``: ``s + 1`` (or ``-s-1``) only when ``|x| = s``
        up to rounding and ``u`` within ``2**-52`` of 1; callers clamp them to ``-s..s``.
        The uniforms are drawn in order, ``rng.random(d)`` in slices.
        """
        x = np.array(v, dtype=np.float64)            # a copy we may overwrite
        f32, exponent = self._scales(x)
        s = float(self.levels)
        with np.errstate(divide="ignore", over="ignore"):
            per = np.where(f32 > 0, s / np.where(f32 > 0, f32, 1).astype(np.float64), 0.0)
            factor = per * 2.0 ** -exponent
        scalar = None
        if not np.isfinite(factor).all():            # tiny scales: two exact-enough steps
            x *= 2.0 ** -exponent
            self._per_bucket(x, per)
        elif factor.size == 1:
            scalar = factor[0]                       # applied chunk by chunk below
        else:
            self._per_bucket(x, factor)              # x = s v / c
        # Chunks that stay in cache: multiply, add the uniforms, floor, test for zero in
        # one visit instead of a pass over memory for each step.
        d = x.size
        buf = np.empty(min(d, _QCHUNK))
        mask = np.empty(d, dtype=bool) if nonzero else None
        for lo in range(0, d, _QCHUNK):
            chunk = x[lo:lo + _QCHUNK]
            if scalar is not None:
                chunk *= scalar
            u = buf[:chunk.size]
            rng.random(out=u)
            chunk += u
            np.floor(chunk, out=chunk)
            if mask is not None:
                np.not_equal(chunk, 0, out=mask[lo:lo + _QCHUNK])
        return f32, exponent, x, None if mask is None else np.flatnonzero(mask)

    def quantize(self, vec: np.ndarray, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Quantize ``vec``: ``(scales float64 (n_buckets,), signed levels int32 (d,))``.

        The scales are exactly those the message carries (a float32 times ``2**e``).
        ``dequantize(*quantize(v, rng))`` is exactly what ``decode(encode(v, rng=rng))``
        returns for a generator in the same state.
        """
        v = check_vector(vec)
        f32, exponent, x, _ = self._levels(v, self._rng if rng is None else rng)
        np.clip(x, -self.levels, self.levels, out=x)
        return _full_scales(f32, exponent), x.astype(np.int32)

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
        v = check_vector(vec)
        d = v.size
        coding = self.coding
        f32, exponent, x, idx = self._levels(v, self._rng if rng is None else rng,
                                             nonzero=coding != "dense")
        if coding != "dense":
            sparse = _SparseFields(idx, x[idx], self.levels)
            if coding == "auto":
                dense_bytes = -(-d * self.dense_width // 8)
                coding = "elias" if sparse.nbytes < dense_bytes else "dense"
        if coding == "elias":
            body, coding = sparse.to_bytes(), sparse.coding
        else:
            body = self._dense_bytes(x)
        payload_len = 4 * f32.size + len(body)
        header = Header(self.codec_id, d, self.levels, self.bucket_size or 0,
                        self.norm, coding, payload_len, exponent)
        return b"".join((header.pack(), f32.astype("<f4").tobytes(), body))

    def _dense_bytes(self, x: np.ndarray) -> bytes:
        """Sign-magnitude codes of the (unclamped) levels ``x``, packed."""
        width, s = self.dense_width, self.levels
        signed_type, code_type = _dense_types(s)
        levels = x.astype(signed_type)
        if levels.min() < -s or levels.max() > s:      # a rare +-(s + 1)
            np.clip(levels, -s, s, out=levels)
        mags = np.abs(levels)                          # |level| < 2**(width - 1)
        codes = (mags.view(code_type) if mags.itemsize == np.dtype(code_type).itemsize
                 else mags.astype(code_type))
        codes |= (levels < 0).view(np.uint8).astype(code_type, copy=False) \
            << code_type(width - 1)
        return pack_fixed(codes, width)

    # -- decoding -------------------------------------------------------------------
    def decode(self, buf: bytes | bytearray | memoryview, *,
               max_dim: int | None = None) -> np.ndarray:
        """Decode a message to the exact quantized values (float64, length d).

        ``max_dim`` rejects messages announcing more coordinates (see
        :meth:`Codec.decode`).
        """
        header, payload = self._read_header(buf, max_dim)
        if header.levels < 1 or header.coding not in ("elias", "elias-gamma", "dense") or \
                header.norm not in ("l2", "max"):
            raise CodecError(f"impossible qsgd parameters in header: levels="
                             f"{header.levels}, norm={header.norm!r}, coding={header.coding!r}")
        mine = (self.levels, self.bucket_size or 0, self.norm)
        theirs = (header.levels, header.bucket_size, header.norm)
        if mine != theirs:
            raise CodecError(f"message was encoded with qsgd(levels={theirs[0]}, "
                             f"bucket_size={theirs[1] or None}, norm={theirs[2]!r}), cannot "
                             f"decode it with {self!r}")
        if not MIN_EXPONENT <= header.exponent <= MAX_EXPONENT:
            raise CodecError(f"scale exponent {header.exponent} out of range "
                             f"{MIN_EXPONENT}..{MAX_EXPONENT}")
        d = header.d
        nb = -(-d // self._bucket(d))
        if payload.size < 4 * nb:
            raise CodecError(f"payload of {payload.size} bytes cannot hold the {nb} "
                             f"float32 bucket scales")
        f32 = payload[:4 * nb].view("<f4").astype(np.float32)
        if not (np.isfinite(f32).all() and (f32 >= 0).all()):
            raise CodecError("bucket scales must be finite and >= 0")
        with np.errstate(over="ignore"):
            scales = _full_scales(f32, header.exponent)
        if not np.isfinite(scales).all():
            raise CodecError(f"bucket scale overflows with exponent {header.exponent}")
        body = payload[4 * nb:]
        if header.coding == "dense":
            return self._dense_values(body, d, scales)
        idx, levels = _SparseFields.parse(body, d, self.levels,
                                          gamma_gaps=header.coding == "elias-gamma")
        out = np.zeros(d, dtype=np.float64)
        steps, factor = self._steps(scales)
        values = levels * (steps[0] if nb == 1 else steps[idx // self._bucket(d)])
        if factor != 1:
            values *= factor
        out[idx] = values
        return out

    def _dense_values(self, body: np.ndarray, d: int, scales: np.ndarray) -> np.ndarray:
        width, s = self.dense_width, self.levels
        need = -(-d * width // 8)
        if body.size != need:
            raise CodecError(f"dense qsgd body for d={d} at {width} bits per coordinate "
                             f"must be {need} bytes, got {body.size}")
        pad = need * 8 - d * width
        if pad and body[-1] & ((1 << pad) - 1):
            raise CodecError("nonzero padding bits after the dense qsgd body")
        codes = unpack_fixed(body, d, width)           # uint8, uint16 or uint32
        code_type = codes.dtype.type
        mags = codes & code_type((1 << (width - 1)) - 1)
        negative = codes >> code_type(width - 1)       # 0 or 1
        if mags.max() > s:
            raise CodecError(f"level {int(mags.max())} exceeds levels={s}")
        if (codes == code_type(1 << (width - 1))).any():
            raise CodecError("dense qsgd body holds a negative zero level")
        signed_view = mags.dtype.str.replace("u", "i")  # |level| < 2**(bits - 1)
        levels = mags.view(signed_view) * (1 - 2 * negative.view(signed_view))
        return self._apply_steps(levels, scales)


def _dense_types(s: int) -> tuple[type, type]:
    """(signed type holding -s-1..s+1, unsigned type of the dense codes) for ``s``."""
    if s < 127:
        return np.int8, np.uint8
    if s < 32767:
        return np.int16, np.uint16
    return np.int64, np.uint32


def _read_count(stream: np.ndarray) -> tuple[int, int]:
    """(k, bits used) from the Elias delta code of ``k + 1`` opening a sparse stream."""
    nbits = 8 * stream.size
    head = int.from_bytes(stream[:8].tobytes().ljust(8, b"\0"), "big")   # <= 43 bits used
    unary = 64 - head.bit_length()                  # leading zeros of gamma(L + 1)
    if unary > 5:                                   # L + 1 <= 33: k + 1 < 2**32
        raise CodecError("sparse qsgd body does not start with a valid nonzero count")
    length = 2 * unary + 1
    tail = (head >> (64 - length)) - 1              # L
    end = length + tail
    if end > nbits or end > 64:
        raise CodecError("sparse qsgd body too short for its nonzero count")
    n = (1 << tail) | ((head >> (64 - end)) & ((1 << tail) - 1))
    return n - 1, end


def _full_scales(f32: np.ndarray, exponent: int) -> np.ndarray:
    """Exact float64 scales ``f32 * 2**exponent``."""
    return np.ldexp(f32.astype(np.float64), exponent)


def _row_norms(rows: np.ndarray) -> np.ndarray:
    """l2 norm of each row of a 2-D float64 array, without underflow or overflow."""
    sumsq = np.einsum("ij,ij->i", rows, rows)
    norms = np.sqrt(sumsq)
    redo = np.flatnonzero(~((sumsq >= _SMALL_SUMSQ) & (sumsq <= _LARGE_SUMSQ)))
    if redo.size:                                # rare: rescale by the largest entry
        sub = np.abs(rows[redo])
        peak = sub.max(axis=1)
        live = (peak > 0) & np.isfinite(peak)
        scaled = sub[live] / peak[live, None]
        norms[redo[live]] = peak[live] * np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
        norms[redo[~live]] = np.where(peak[~live] == 0, 0.0, np.nan)
    return norms


class _SparseFields:
    """The Elias-coded sparse body: nonzero positions, levels and signs.

    Works through the nonzeros in chunks of ``CHUNK`` so that every temporary array
    stays small (in cache, no fresh pages); only the three per-nonzero code lengths
    are kept whole, as int8.
    """

    def __init__(self, idx: np.ndarray, signed: np.ndarray, s: int) -> None:
        self.idx, self.signed, self.s = idx, signed, s
        self.count = k = idx.size
        self.gap_tail = np.empty(k, dtype=np.int8)     # L = floor(log2 gap)
        self.gap_unary = np.empty(k, dtype=np.int8)    # K of gamma(L + 1)
        self.level_unary = np.empty(k, dtype=np.int8)  # K of gamma(level)
        for lo, hi in self._chunks():
            tail = bit_length(self._gaps(lo, hi)) - 1
            self.gap_tail[lo:hi] = tail
            self.gap_unary[lo:hi] = _SMALL_UNARY[tail + 1]
            self.level_unary[lo:hi] = bit_length(self._levels(lo, hi)) - 1
        level_sum = int(self.level_unary.sum(dtype=np.int64))
        self.tail_sum = int(self.gap_tail.sum(dtype=np.int64))
        delta_unary = int(self.gap_unary.sum(dtype=np.int64)) + level_sum
        gamma_unary = self.tail_sum + level_sum          # gamma(g) has K = L
        delta_bits = 2 * delta_unary + 3 * k + self.tail_sum
        gamma_bits = 2 * gamma_unary + 3 * k
        self.gamma_gaps = gamma_bits < delta_bits
        self.coding = "elias-gamma" if self.gamma_gaps else "elias"
        self.unary_sum = gamma_unary if self.gamma_gaps else delta_unary
        self.count_bits = int(delta_length(k + 1))      # the count k, as delta(k + 1)
        self.nbits = self.count_bits + min(gamma_bits, delta_bits)
        self.nbytes = -(-self.nbits // 8)

    def _chunks(self):
        return ((lo, min(lo + CHUNK, self.count)) for lo in range(0, self.count, CHUNK))

    def _gaps(self, lo: int, hi: int) -> np.ndarray:
        return np.diff(self.idx[lo:hi], prepend=self.idx[lo - 1] if lo else -1)

    def _levels(self, lo: int, hi: int) -> np.ndarray:
        mags = np.abs(self.signed[lo:hi])
        np.minimum(mags, self.s, out=mags)                 # clamp a rare s + 1
        return mags.astype(np.int64)

    def to_bytes(self) -> bytes:
        """The count, then the four bit sections, zero-padded to a byte."""
        k = self.count
        words = new_words(self.nbits)
        n = k + 1                                  # delta(n): gamma(L + 1), L low bits of n
        tail = n.bit_length() - 1
        unary = (tail + 1).bit_length() - 1
        start = or_fields(words, np.array([1, tail + 1 - (1 << unary), n - (1 << tail)]),
                          np.array([unary + 1, unary, tail]), 0)
        # running bit offsets of the four sections: unary parts, gamma tails, signs, gaps
        offsets = [start, start + 2 * k + self.unary_sum, start + 2 * k + 2 * self.unary_sum,
                   start + 3 * k + 2 * self.unary_sum]
        one = np.int64(1)
        for lo, hi in self._chunks():
            gaps, levels = self._gaps(lo, hi), self._levels(lo, hi)
            tail = self.gap_tail[lo:hi].astype(np.int64)
            unary = np.empty(2 * (hi - lo), dtype=np.int64)    # gap code, gamma(level)
            tails = np.empty_like(unary)
            if self.gamma_gaps:                                # gamma(g)
                unary[0::2] = tail
                tails[0::2] = gaps
            else:                                              # delta: gamma(L + 1), ...
                unary[0::2] = self.gap_unary[lo:hi]
                tails[0::2] = tail + 1
            unary[1::2] = self.level_unary[lo:hi]
            tails[1::2] = levels
            tails -= one << unary
            ones = np.cumsum(unary + 1)                 # unary parts: K zeros, then a one
            ones += offsets[0] - 1
            or_bits(words, ones)
            offsets[0] = int(ones[-1]) + 1
            offsets[1] = or_fields(words, tails, unary, offsets[1])
            or_bits(words, offsets[2] + np.flatnonzero(self.signed[lo:hi] < 0))
            offsets[2] += hi - lo
            if not self.gamma_gaps:                            # ... then L low bits
                offsets[3] = or_fields(words, gaps - (one << tail), tail, offsets[3])
        assert offsets[3] == self.nbits
        return words_to_bytes(words, self.nbits).tobytes()

    @staticmethod
    def parse(body: np.ndarray, d: int, s: int, gamma_gaps: bool
              ) -> tuple[np.ndarray, np.ndarray]:
        """(positions int64, levels float64 signed) from a sparse body; CodecError if bad.

        ``gamma_gaps``: gaps in Elias gamma (coding ``elias-gamma``), else delta.
        """
        stream = body
        nbits = 8 * stream.size
        count, start = _read_count(stream)
        if count > d or 3 * count > nbits - start:   # >= 3 bits per nonzero: check before
            raise CodecError(f"sparse qsgd body announces {count} nonzeros, impossible "
                             f"for d={d} in {nbits} bits")  # allocating anything
        if count == 0:
            if -(-start // 8) != stream.size or stream[-1] & (0xFF >> (start % 8 or 8)):
                raise CodecError("trailing bits after an empty Elias stream")
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        bits = np.unpackbits(stream).view(bool)
        ones = np.flatnonzero(bits[start:])[:2 * count]
        if ones.size < 2 * count:
            raise CodecError("Elias bit stream ran out in the codeword length section")
        ones += start
        k = np.diff(ones, prepend=start - 1) - 1
        if k.max() >= MAX_TAIL_BITS:
            raise CodecError(f"Elias codeword with {int(k.max())}-bit tail: value out of range")
        pos = int(ones[-1]) + 1
        ksum = int(k.sum())
        if pos + ksum + count > nbits:
            raise CodecError("Elias bit stream ran out in the codeword tail section")
        vals = unpack_fields(stream, pos + np.cumsum(k) - k, k) + (np.int64(1) << k)
        pos += ksum
        neg = bits[pos:pos + count]
        pos += count
        levels = vals[1::2]
        if levels.max() > s:
            raise CodecError(f"level {int(levels.max())} exceeds levels={s}")
        if gamma_gaps:
            gaps = vals[0::2]
        else:
            gap_tail = vals[0::2] - 1
            if gap_tail.max() >= MAX_TAIL_BITS:
                raise CodecError(f"gap with {int(gap_tail.max())} low bits: out of range")
            tsum = int(gap_tail.sum())
            if pos + tsum > nbits:
                raise CodecError("Elias bit stream ran out in the gap section")
            gaps = unpack_fields(stream, pos + np.cumsum(gap_tail) - gap_tail, gap_tail)
            gaps += np.int64(1) << gap_tail
            pos += tsum
        if -(-pos // 8) != stream.size:
            raise CodecError(f"{stream.size - -(-pos // 8)} trailing bytes after the "
                             f"Elias bit stream")
        if bits[pos:].any():
            raise CodecError("nonzero padding bits after the Elias bit stream")
        idx = np.cumsum(gaps) - 1
        if idx[-1] >= d:
            raise CodecError(f"gaps run to position {int(idx[-1])}, past d={d}")
        signed = (levels * (1 - 2 * neg.view(np.int8))).astype(np.float64)
        return idx, signed
