"""Seeded fuzzing of the codecs: mutated messages and random round trips.

Every mutated message must either raise :class:`CodecError` or decode to a finite
float64 vector of the length its header announces; nothing else (no other exception,
no warning, no hang, no large allocation) is acceptable. Mutations reach the shared
header (format version 4) and each codec's own parameter block (qsgd's levels, bucket,
norm, coding and exponent; fp16's exponent) as well as the bodies.
"""

from __future__ import annotations

import struct
import tracemalloc
import warnings

import numpy as np
import pytest

from ray_relu.codecs import (QSGD, Codec, CodecError, Natural, PowerSGD, RandK, Sign,
                             TernGrad, TopK, get_codec)
from ray_relu.codecs.base import HEADER_SIZE

MAX_DIM = 1 << 16          # what the fuzz loop allows a decoder to allocate (x 8 bytes)
EXTREME = [0, 1, 2, 3, 7, 8, 255, 256, 2 ** 15, 2 ** 16 - 1, 2 ** 31 - 1, 2 ** 31,
           2 ** 32 - 1, 2 ** 32, 2 ** 63, 2 ** 64 - 1]
# (offset, struct format) of the header fields (id, d; the payload length is at 21)
# and of each codec's parameter block, which opens its payload
LENGTH_AT = 21
HEADER_FIELDS = [(5, "<8s"), (13, "<Q"), (LENGTH_AT, "<Q")]
BLOCK_FIELDS = {"qsgd": [(29, "<I"), (33, "<I"), (37, "<B"), (38, "<B"), (39, "<h")],
                "fp16": [(29, "<h")], "fp32": [], "fp64": [],
                # the compressors (docs/compressors.md); float fields get integer bits
                "topk": [(29, "<I"), (33, "<B"), (34, "<Q")], "randk": [(29, "<I"), (33, "<Q")],
                "sign": [(29, "<Q")], "terngrad": [(29, "<Q"), (37, "<B"), (38, "<I")],
                "natural": [(29, "<h")], "powersgd": [(29, "<I"), (33, "<I")]}
BLOCK_SIZE = {"qsgd": 12, "fp16": 2, "fp32": 0, "fp64": 0, "topk": 5, "randk": 12,
              "sign": 8, "terngrad": 9, "natural": 2, "powersgd": 8}


def set_length(b: bytearray, n: int) -> None:
    """Write ``n`` into the header's payload length field."""
    b[LENGTH_AT:LENGTH_AT + 8] = struct.pack("<Q", n)


def message_pool() -> list[tuple[Codec, bytes]]:
    rng = np.random.default_rng(123)
    pool = []
    for d in (1, 6, 17, 64):
        v = rng.standard_normal(d) * rng.choice([1e-3, 1.0, 100.0], size=d)
        v[rng.random(d) < 0.3] = 0.0
        for name in ("fp64", "fp32", "fp16"):
            pool.append((get_codec(name), get_codec(name).encode(v)))
        for kw in (dict(levels=1), dict(levels=3, coding="dense"), dict(levels=16),
                   dict(levels=300, bucket_size=5, norm="max"),
                   dict(levels=70000, bucket_size=4, coding="dense"),
                   dict(levels=2, bucket_size=3, coding="elias"),
                   dict(levels=127, coding="dense"), dict(levels=16, coding="ans"),
                   dict(levels=70000, bucket_size=5, coding="ans")):
            codec = QSGD(**kw)
            pool.append((codec, codec.encode(v, rng=rng)))
        for codec in (TopK(k=3), TopK(ratio=0.5, levels=5), RandK(k=2), Sign(), TernGrad(),
                      Natural(), PowerSGD(), PowerSGD(rank=2, rows=2 if d % 2 == 0 else 1)):
            pool.append((codec, codec.encode(v, rng=rng)))
        spike = np.zeros(d)
        spike[-1] = 5.0
        pool.append((TernGrad(), TernGrad().encode(spike, rng=rng)))    # sparse coding
    return pool


def mutate(msg: bytes, rng: np.random.Generator, codec_id: str) -> bytes:
    """One to three random edits; half the time the payload length is made consistent
    again so that the payload parsers, not only the header check, get exercised."""
    b = bytearray(msg)
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 8))
        if kind == 0 and b:                                  # flip bits
            pos = int(rng.integers(0, len(b)))
            b[pos] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1 and b:                                # random byte
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        elif kind == 2:                                      # truncate
            del b[int(rng.integers(0, len(b) + 1)):]
        elif kind == 3:                                      # append garbage
            b += rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        elif kind == 4 and len(b) > HEADER_SIZE:             # delete / insert a byte
            pos = int(rng.integers(HEADER_SIZE, len(b)))
            if rng.random() < 0.5:
                del b[pos]
            else:
                b.insert(pos, int(rng.integers(0, 256)))
        elif kind == 5 and len(b) >= HEADER_SIZE + BLOCK_SIZE[codec_id]:
            fields = HEADER_FIELDS[1:] + BLOCK_FIELDS[codec_id]   # extreme field value
            off, fmt = fields[int(rng.integers(0, len(fields)))]
            size = struct.calcsize(fmt)
            value = int(rng.choice(EXTREME)) % (1 << (8 * size))
            if fmt == "<h":
                value = value - (1 << 16) if value >= 1 << 15 else value
            b[off:off + size] = struct.pack(fmt, value)
        elif kind == 6 and len(b) > HEADER_SIZE:             # random payload
            n = int(rng.integers(0, 2 * (len(b) - HEADER_SIZE) + 2))
            b[HEADER_SIZE:] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        elif kind == 7 and len(b) > HEADER_SIZE + 4:         # zero or saturate a run
            start = int(rng.integers(HEADER_SIZE, len(b)))
            stop = min(len(b), start + int(rng.integers(1, 8)))
            b[start:stop] = bytes([0 if rng.random() < 0.5 else 255]) * (stop - start)
    if len(b) >= HEADER_SIZE and rng.random() < 0.5:
        set_length(b, len(b) - HEADER_SIZE)
    return bytes(b)


def decode_or_codec_error(codec: Codec, msg: bytes) -> np.ndarray | CodecError:
    """The decoded vector or the CodecError; any other exception fails the test (an
    IndexError deep in a parser is a bug even when it happens to stop bad input)."""
    try:
        return codec.decode(msg, max_dim=MAX_DIM)
    except CodecError as exc:
        assert str(exc)
        return exc
    except Exception as exc:                                   # noqa: BLE001
        pytest.fail(f"{codec!r} raised {type(exc).__name__} instead of CodecError on a "
                    f"{len(msg)}-byte message: {exc}")


def check_outcome(codec: Codec, msg: bytes) -> bool:
    """True if ``msg`` decoded, False if it raised CodecError; fails otherwise."""
    out = decode_or_codec_error(codec, msg)
    if isinstance(out, CodecError):
        return False
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.ndim == 1
    assert out.size == struct.unpack_from("<Q", msg, 13)[0] <= MAX_DIM
    assert np.all(np.isfinite(out))
    return True


@pytest.mark.timeout(120)
def test_mutated_messages_raise_codec_error_or_decode_cleanly():
    rng = np.random.default_rng(2024)
    pool = message_pool()
    decoded = 0
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for _ in range(6000):
                codec, msg = pool[int(rng.integers(0, len(pool)))]
                decoded += check_outcome(codec, mutate(msg, rng, codec.codec_id))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 8 * MAX_DIM                  # no allocation beyond a few outputs
    assert 100 < decoded < 4000                     # both outcomes were exercised


@pytest.mark.timeout(120)
def test_random_bytes_after_a_valid_header():
    """Payloads of pure noise behind every kind of valid header, and bodies of pure
    noise behind a valid header and parameter block (so the body parsers, not only the
    block checks, see them)."""
    rng = np.random.default_rng(7)
    pool = message_pool()
    decoded = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(3000):
            codec, msg = pool[int(rng.integers(0, len(pool)))]
            keep = HEADER_SIZE + (BLOCK_SIZE[codec.codec_id] if i % 2 else 0)
            n = int(rng.integers(0, 64))
            noise = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            head = bytearray(msg[:keep])
            set_length(head, keep - HEADER_SIZE + n)
            decoded += check_outcome(codec, bytes(head) + noise)
    assert decoded > 0                               # a few noise bodies are valid


@pytest.mark.timeout(120)
def test_random_round_trips():
    """Random vectors and QSGD settings: decode(encode) is the dequantized quantization."""
    rng = np.random.default_rng(99)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for case in range(400):
            d = int(rng.choice([1, 2, 3, 7, 64, 100, 1000, 5000]))
            s = int(rng.choice([1, 2, 3, 5, 16, 127, 128, 255, 4096, 40000, 2 ** 31 - 1]))
            bucket = None if rng.random() < 0.4 else int(rng.integers(1, 2 * d + 2))
            codec = QSGD(levels=s, bucket_size=bucket, norm=str(rng.choice(["l2", "max"])),
                         coding=str(rng.choice(["auto", "elias", "dense", "ans"])))
            single = rng.random() < 0.3                      # float32 input
            v = rng.standard_normal(d) * 10.0 ** rng.uniform(*(-30, 30) if single else (-200, 200))
            v[rng.random(d) < rng.random()] = 0.0
            if single:
                v = v.astype(np.float32)
            seed = int(rng.integers(0, 2 ** 32))
            msg = codec.encode(v, rng=np.random.default_rng(seed))
            scales, levels = codec.quantize(v, rng=np.random.default_rng(seed))
            out = codec.decode(msg, max_dim=d)
            np.testing.assert_array_equal(out, codec.dequantize(scales, levels),
                                          err_msg=f"case {case}: {codec!r}, d={d}")
            assert np.all(np.abs(levels) <= s)
            assert np.all(levels[v == 0] == 0) and np.all(levels * np.sign(v) >= 0)
            assert len(msg) == HEADER_SIZE + struct.unpack_from("<Q", msg, LENGTH_AT)[0]
            assert struct.unpack_from("<IIB", msg, HEADER_SIZE) == \
                (s, bucket or 0, {"l2": 1, "max": 2}[codec.norm])     # the parameter block
            # any other codec refuses the message cleanly
            with pytest.raises(CodecError):
                get_codec("fp32").decode(msg)


@pytest.mark.timeout(120)
def test_payload_length_edits_always_raise_codec_error():
    """Cut or pad the payload and fix the header's length up: no body format has
    slack (raw arrays and dense bodies have an exact size, Elias streams end where
    their last field does), so the codec must raise CodecError, never decode."""
    rng = np.random.default_rng(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for codec, msg in message_pool():
            payload = len(msg) - HEADER_SIZE
            cuts = {int(c) for c in rng.integers(0, payload, size=6)} | {0, payload - 1}
            for n in sorted(cuts):
                edited = bytearray(msg[:HEADER_SIZE + n])
                set_length(edited, n)
                out = decode_or_codec_error(codec, bytes(edited))
                assert isinstance(out, CodecError), f"{codec!r} decoded a payload cut to {n} bytes"
            for extra in (1, 2, 8, int(rng.integers(1, 64))):
                edited = bytearray(msg + rng.integers(0, 256, extra, dtype=np.uint8).tobytes())
                set_length(edited, payload + extra)
                out = decode_or_codec_error(codec, bytes(edited))
                assert isinstance(out, CodecError), f"{codec!r} decoded {extra} appended bytes"
