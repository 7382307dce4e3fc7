"""QSGD: stochastic quantization (Alistarh et al., NeurIPS 2017) and its bit coding.

Quantizer (DESIGN.md section 3), per bucket of ``b`` consecutive coordinates with scale
``c`` (the bucket's l2 norm or max-abs, stored as float32 and *rounded up* so that
``|v_i| <= c`` holds exactly and every level is in ``0..s``)::

    r_i = s |v_i| / c,   xi_i = floor(r_i + u_i),  u_i ~ U[0, 1)
    Q(v)_i = sgn(v_i) * xi_i * (c / s)

``floor(r + u)`` is ``floor(r) + 1`` with probability ``frac(r)`` (stochastic rounding),
so ``E[Q(v)] = v``. The quantization uses the float32-rounded scale, so decoding
reproduces the quantized values bit for bit (see :meth:`QSGD.dequantize`).

Wire payload after the common header: ``ceil(d/b)`` float32 scales, then either

* **dense**: ``d`` fixed-width fields of ``1 + ceil(log2(s+1))`` bits (sign bit, then
  the level), packed MSB first;
* **elias** (sparse): a uint32 count ``k`` of nonzeros, then a bit stream describing
  each nonzero ``j`` by its gap ``g_j`` (distance to the previous nonzero, first one
  counted from position -1, so ``g_j >= 1``), its sign and its level ``xi_j >= 1``.
  The gap is written in **Elias delta** (``gamma(L+1)`` then the ``L`` low bits of
  ``g``, ``L = floor(log2 g)``) and the level in **Elias gamma**. Delta for gaps and
  gamma for levels is the measured best of the Elias family here: levels are mostly
  1-3, where gamma is shortest (1 or 3 bits), while gaps are ~``d/k``, where delta
  saves ``~log2(g) - 2 log2 log2(g)`` bits over gamma and also beats omega below
  ``2**16`` (see ``benchmarks/bits_on_wire.py``, which measures all three).

  The stream is column-split so that it decodes without a sequential scan: section 1
  holds the unary parts (``K`` zeros and a one) of the ``2k`` gamma codewords
  ``gamma(L_j+1), gamma(xi_j)`` in order; section 2 their ``K``-bit tails; section 3
  the ``k`` sign bits (1 = negative); section 4 the ``L_j`` low bits of each gap. Each
  codeword is an exact Elias codeword, only its parts are grouped, so the length is
  exactly that of the interleaved stream. Finding the ``2k`` ones of section 1 gives
  every codeword length at once, then all fields are read with array arithmetic.
  Zero bits pad the stream to a whole byte.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validation import check_choice, check_int
from .base import (Codec, CodecError, Header, MAX_DIM, check_vector, non_finite_error)
from .bitcoding import (MAX_TAIL_BITS, bit_length, pack_fixed, read_fields, read_unary,
                        unary_bits, unpack_fixed, write_fields)

__all__ = ["QSGD"]

MAX_LEVELS = 2 ** 31 - 1          # a signed level fits int32; dense fields fit 32 bits
_F32_MAX = float(np.finfo(np.float32).max)


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
        # sign bit + level bits
        self.dense_width = 1 + max(1, math.ceil(math.log2(self.levels + 1)))

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
        """
        d = check_int("d", d, minimum=1)
        b = self._bucket(d)
        s = self.levels
        first = b / s ** 2 if self.norm == "l2" else b / (4 * s ** 2)
        return float(min(first, math.sqrt(b) / s))

    # -- quantization ---------------------------------------------------------------
    def _bucket(self, d: int) -> int:
        return d if self.bucket_size is None else min(self.bucket_size, d)

    def _scales(self, a: np.ndarray) -> np.ndarray:
        """float32 scale of each bucket of ``a = |v|`` (float64), rounded up."""
        d = a.size
        b = self._bucket(d)
        nfull, tail = divmod(d, b)
        full = a[:nfull * b].reshape(nfull, b)
        if self.norm == "l2":
            stat = np.einsum("ij,ij->i", full, full) if b < d else np.array([a @ a])
            if tail:
                stat = np.append(stat, a[nfull * b:] @ a[nfull * b:])
            np.sqrt(stat, out=stat)
        else:
            stat = full.max(axis=1)
            if tail:
                stat = np.append(stat, a[nfull * b:].max())
        if not np.isfinite(stat).all():
            if not np.isfinite(a).all():
                raise non_finite_error("vec", a)
            stat = np.full_like(stat, np.inf)      # squares overflowed: fall through
        scales = stat.astype(np.float32)
        low = scales.astype(np.float64) < stat      # round up so |v_i| <= scale exactly
        scales[low] = np.nextafter(scales[low], np.float32(np.inf))
        if np.isinf(scales).any():
            raise ValueError(f"vec has a bucket {self.norm} norm of "
                             f"{float(stat.max()):.6g}, beyond the float32 range of the "
                             f"scale (max {_F32_MAX:.6g}); allowed: smaller values")
        return scales

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

    def _quantize_mags(self, v: np.ndarray, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(float32 scales, level magnitudes as a float64 array)."""
        a = np.abs(v, out=np.empty(v.size, dtype=np.float64))
        scales = self._scales(a)
        s64 = scales.astype(np.float64)
        with np.errstate(divide="ignore"):
            mult = np.where(s64 > 0, self.levels / np.where(s64 > 0, s64, 1.0), 0.0)
        self._per_bucket(a, mult)                      # a = r = s |v| / c, in [0, s]
        a += rng.random(v.size)
        np.floor(a, out=a)
        np.minimum(a, self.levels, out=a)              # r = s, u -> 1 may round to s + 1
        return scales, a

    def quantize(self, vec: np.ndarray, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Quantize ``vec``: ``(scales float32 (n_buckets,), signed levels int32 (d,))``.

        ``dequantize(*quantize(v))`` is exactly what ``decode(encode(v))`` returns
        for the same random draws.
        """
        v = check_vector(vec)
        scales, mags = self._quantize_mags(v, self._rng if rng is None else rng)
        levels = mags.astype(np.int32)
        np.negative(levels, out=levels, where=v < 0)
        return scales, levels

    def _multipliers(self, scales: np.ndarray) -> np.ndarray:
        return scales.astype(np.float64) / self.levels

    def dequantize(self, scales: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """Quantized values ``levels * scale / s`` (float64) for each bucket's scale."""
        levels = np.asarray(levels)
        scales = np.asarray(scales, dtype=np.float32)
        if levels.ndim != 1 or levels.size < 1:
            raise ValueError(f"levels must be a non-empty 1-D array, got shape {levels.shape}")
        nb = -(-levels.size // self._bucket(levels.size))
        if scales.shape != (nb,):
            raise ValueError(f"scales must have shape ({nb},) for d={levels.size}, "
                             f"got {scales.shape}")
        out = levels.astype(np.float64)
        self._per_bucket(out, self._multipliers(scales))
        return out

    # -- encoding -------------------------------------------------------------------
    def encode(self, vec: np.ndarray, *, rng: np.random.Generator | None = None) -> bytes:
        """Quantize and bit-code ``vec`` (1-D, finite); see the module docstring."""
        v = check_vector(vec)
        d = v.size
        scales, mags = self._quantize_mags(v, self._rng if rng is None else rng)
        dense_bytes = -(-d * self.dense_width // 8)
        coding = self.coding
        if coding != "dense":
            idx = np.flatnonzero(mags)
            sparse = _SparseFields(idx, mags[idx].astype(np.int64), v[idx] < 0)
            if coding == "auto":
                coding = "elias" if sparse.nbytes < dense_bytes else "dense"
        if coding == "elias":
            body = sparse.to_bytes()
        else:
            body = self._dense_bytes(v, mags)
        payload_len = 4 * scales.size + len(body)
        header = Header(self.codec_id, d, self.levels, self.bucket_size or 0,
                        self.norm, coding, payload_len)
        return b"".join((header.pack(), scales.astype("<f4").tobytes(), body))

    def _dense_bytes(self, v: np.ndarray, mags: np.ndarray) -> bytes:
        width = self.dense_width
        dtype = np.uint8 if width <= 8 else np.uint16 if width <= 16 else np.uint32
        codes = mags.astype(dtype)
        neg = (v < 0) & (codes > 0)                  # no "negative zero" on the wire
        codes |= neg.astype(dtype) << dtype(width - 1)
        return pack_fixed(codes, width)

    # -- decoding -------------------------------------------------------------------
    def decode(self, buf: bytes | bytearray | memoryview) -> np.ndarray:
        """Decode a message to the exact quantized values (float64, length d)."""
        header, payload = self._read_header(buf)
        if header.levels < 1 or header.coding not in ("elias", "dense") or \
                header.norm not in ("l2", "max"):
            raise CodecError(f"impossible qsgd parameters in header: levels="
                             f"{header.levels}, norm={header.norm!r}, coding={header.coding!r}")
        mine = (self.levels, self.bucket_size or 0, self.norm)
        theirs = (header.levels, header.bucket_size, header.norm)
        if mine != theirs:
            raise CodecError(f"message was encoded with qsgd(levels={theirs[0]}, "
                             f"bucket_size={theirs[1] or None}, norm={theirs[2]!r}), cannot "
                             f"decode it with {self!r}")
        d = header.d
        nb = -(-d // self._bucket(d))
        if payload.size < 4 * nb:
            raise CodecError(f"payload of {payload.size} bytes cannot hold the {nb} "
                             f"float32 bucket scales")
        scales = payload[:4 * nb].view("<f4").astype(np.float32)
        if not (np.isfinite(scales).all() and (scales >= 0).all()):
            raise CodecError("bucket scales must be finite and >= 0")
        body = payload[4 * nb:]
        if header.coding == "dense":
            levels = self._dense_levels(body, d)
            out = levels
            self._per_bucket(out, self._multipliers(scales))
            return out
        idx, signed = _SparseFields.parse(body, d, self.levels)
        out = np.zeros(d, dtype=np.float64)
        mult = self._multipliers(scales)
        b = self._bucket(d)
        out[idx] = signed * (mult[0] if nb == 1 else mult[idx // b])
        return out

    def _dense_levels(self, body: np.ndarray, d: int) -> np.ndarray:
        width = self.dense_width
        need = -(-d * width // 8)
        if body.size != need:
            raise CodecError(f"dense qsgd body for d={d} at {width} bits per coordinate "
                             f"must be {need} bytes, got {body.size}")
        pad = need * 8 - d * width
        if pad and body[-1] & ((1 << pad) - 1):
            raise CodecError("nonzero padding bits after the dense qsgd body")
        codes = unpack_fixed(body, d, width)
        mags = codes & ((1 << (width - 1)) - 1)
        neg = codes >> (width - 1)
        if mags.max() > self.levels:
            raise CodecError(f"level {int(mags.max())} exceeds levels={self.levels}")
        neg_bool = neg.astype(bool)
        if (neg_bool & (mags == 0)).any():
            raise CodecError("dense qsgd body holds a negative zero level")
        out = mags.astype(np.float64)
        np.negative(out, out=out, where=neg_bool)
        return out


class _SparseFields:
    """The Elias-coded sparse body: nonzero positions, levels and signs."""

    def __init__(self, idx: np.ndarray, levels: np.ndarray, neg: np.ndarray) -> None:
        self.count = idx.size
        gaps = np.diff(idx, prepend=-1)
        self.gaps = gaps
        self.levels = levels
        self.neg = neg
        self.gap_tail = bit_length(gaps) - 1            # L: delta's low-bit count
        glen = self.gap_tail + 1                        # delta writes gamma(L + 1)
        # the 2k gamma-coded numbers, interleaved gap-length, level, gap-length, ...
        self.gamma_vals = np.empty(2 * self.count, dtype=np.int64)
        self.gamma_vals[0::2] = glen
        self.gamma_vals[1::2] = levels
        self.unary = bit_length(self.gamma_vals) - 1
        self.nbits = int(2 * self.unary.sum() + 2 * self.count + self.count
                         + self.gap_tail.sum())
        self.nbytes = 4 + -(-self.nbits // 8)

    def to_bytes(self) -> bytes:
        """uint32 count, then the four bit sections, zero-padded to a byte."""
        k = self.unary
        bits = np.concatenate((
            unary_bits(k),
            write_fields(self.gamma_vals - (np.int64(1) << k), k),
            self.neg.astype(np.uint8),
            write_fields(self.gaps - (np.int64(1) << self.gap_tail), self.gap_tail),
        ))
        return np.uint32(self.count).astype("<u4").tobytes() + np.packbits(bits).tobytes()

    @staticmethod
    def parse(body: np.ndarray, d: int, s: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions int64, signed levels float64) from a sparse body; CodecError if bad."""
        if body.size < 4:
            raise CodecError("sparse qsgd body too short for its nonzero count")
        count = int(body[:4].view("<u4")[0])
        nbits = 8 * (body.size - 4)
        if count > d or 3 * count > nbits:        # >= 3 bits per nonzero: check before
            raise CodecError(f"sparse qsgd body announces {count} nonzeros, impossible "
                             f"for d={d} in {nbits} bits")  # allocating anything
        bits = np.unpackbits(body[4:])
        got = read_unary(bits, 2 * count)
        if got is None:
            raise CodecError("Elias bit stream ran out in the codeword length section")
        k, pos = got
        if count and k.max() >= MAX_TAIL_BITS:
            raise CodecError(f"Elias codeword with {int(k.max())}-bit tail: value out of range")
        ksum = int(k.sum())
        if pos + ksum + count > nbits:
            raise CodecError("Elias bit stream ran out in the codeword tail section")
        vals = read_fields(bits[pos:pos + ksum], k) + (np.int64(1) << k)
        pos += ksum
        neg = bits[pos:pos + count].astype(bool)
        pos += count
        gap_tail = vals[0::2] - 1
        levels = vals[1::2]
        if count and gap_tail.max() >= MAX_TAIL_BITS:
            raise CodecError(f"gap with {int(gap_tail.max())} low bits: out of range")
        if count and levels.max() > s:
            raise CodecError(f"level {int(levels.max())} exceeds levels={s}")
        tsum = int(gap_tail.sum())
        if pos + tsum > nbits:
            raise CodecError("Elias bit stream ran out in the gap section")
        gaps = read_fields(bits[pos:pos + tsum], gap_tail) + (np.int64(1) << gap_tail)
        pos += tsum
        if -(-pos // 8) != nbits // 8:
            raise CodecError(f"{nbits // 8 - -(-pos // 8)} trailing bytes after the "
                             f"Elias bit stream")
        if bits[pos:].any():
            raise CodecError("nonzero padding bits after the Elias bit stream")
        idx = np.cumsum(gaps) - 1
        if count and idx[-1] >= d:
            raise CodecError(f"gaps run to position {int(idx[-1])}, past d={d}")
        signed = levels.astype(np.float64)
        np.negative(signed, out=signed, where=neg)
        return idx, signed
