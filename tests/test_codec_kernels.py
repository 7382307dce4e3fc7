"""The compiled codec kernels: same bytes as the pure-numpy codec they replaced.

``tests/data/codec_corpus.json`` holds hashes first written by the numpy codec and
carried over to format versions 3 and 4 (see ``tests/codec_corpus.py``); every one must
be reproduced, so the wire format and the random stream (same seed, same bytes) are
unchanged. :func:`reference_message` writes the format out bit by bit, independently.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import codec_corpus
from ray_relu.codecs import QSGD, CodecError
from ray_relu.codecs.base import HEADER_SIZE


def test_corpus_hashes_are_reproduced():
    entries = json.loads(codec_corpus.PATH.read_text())
    assert len(entries) == len(codec_corpus.cases())
    bad = []
    for entry in entries:
        case = {k: entry[k] for k in ("recipe", "d", "seed", "codec")}
        got = codec_corpus.run_case(case)
        if got != {"msg": entry["msg"], "dec": entry["dec"]}:
            bad.append((case, got))
    assert not bad, f"{len(bad)} of {len(entries)} cases changed, first: {bad[:3]}"


# --------------------------------------------------------------------------- reference coder
# The wire format (docs/codecs.md), written out independently of the codecs:
HEADER = struct.Struct("<4sB8sQQ")               # magic, version, id, d, payload length
PARAMS = struct.Struct("<IIBBh")                 # qsgd: levels, bucket, norm, coding, exponent
CODING_AT = HEADER.size + 9


def gamma(n: int) -> tuple[str, str]:
    """Elias gamma of ``n >= 1`` as (unary part: K zeros and a one, tail: K bits)."""
    b = bin(n)[2:]
    return "0" * (len(b) - 1) + "1", b[1:]


def delta(n: int) -> str:
    """Elias delta of ``n >= 1``: gamma(L + 1), then the L low bits of n."""
    return "".join(gamma(n.bit_length())) + bin(n)[3:]


def to_bytes(bits: str) -> bytes:
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))


def reference_ans(levels: np.ndarray) -> bytes:
    """The ``ans`` body (docs/codecs.md): table, rANS states, signs and escapes."""
    d = levels.size
    mags = [abs(int(x)) for x in levels]
    syms = [min(m, 63) for m in mags]
    n = max(syms) + 1
    counts = [syms.count(t) for t in range(n)]
    freq = [max(1, c * 2 ** 14 // d) if c else 0 for c in counts]
    top = min(range(n), key=lambda t: (-counts[t], t))     # first most frequent symbol
    freq[top] += 2 ** 14 - sum(freq)
    start = [sum(freq[:t]) for t in range(n)]
    x, words = [2 ** 16, 2 ** 16], []
    for i in reversed(range(d)):        # two coders (i % 2), run backwards
        t, c = syms[i], i % 2
        if x[c] >= freq[t] << 18:
            words.append(x[c] & 0xFFFF)
            x[c] >>= 16
        x[c] = (x[c] // freq[t] << 14) + x[c] % freq[t] + start[t]
    table = format(n - 1, "06b") + "".join(delta(f + 1) for f in freq)
    states = b"".join(c.to_bytes(4, "little") for c in x) + b"".join(
        w.to_bytes(2, "little") for w in reversed(words))
    extras = ("".join("1" if x < 0 else "0" for x in levels if x)
              + "".join("".join(gamma(m - 62)) for m in mags if m >= 63))
    return to_bytes(table) + states + to_bytes(extras)


def reference_message(codec: QSGD, v: np.ndarray, seed: int) -> bytes:
    """The message the format spec (qsgd.py's docstring) describes, written bit by bit
    from the quantized levels: slow and obvious, to pin the compiled coder."""
    scales, levels = codec.quantize(v, rng=np.random.default_rng(seed))
    msg = codec.encode(v, rng=np.random.default_rng(seed))
    exponent = struct.unpack_from("<h", msg, HEADER.size + 10)[0]
    f32 = np.ldexp(scales, -exponent).astype("<f4")
    assert np.array_equal(np.ldexp(f32.astype(np.float64), exponent), scales)
    d, s = v.size, codec.levels
    width = 1 + s.bit_length()
    dense = "".join(("1" if l < 0 else "0") + format(abs(int(l)), f"0{width - 1}b")
                    for l in levels)
    idx = np.flatnonzero(levels)
    streams = {}
    for name in ("elias", "elias-gamma"):
        words, lows, prev = [], "", -1
        for i in idx:
            gap, prev = int(i) - prev, int(i)
            if name == "elias":                   # delta: gamma(L + 1), then L low bits
                words.append(gamma(gap.bit_length()))
                lows += bin(gap)[3:]
            else:
                words.append(gamma(gap))
            words.append(gamma(abs(int(levels[i]))))
        n = idx.size + 1                          # the count, as delta(k + 1)
        head = "".join(gamma(n.bit_length())) + bin(n)[3:]
        streams[name] = (head + "".join(u for u, _ in words) + "".join(t for _, t in words)
                         + "".join("1" if levels[i] < 0 else "0" for i in idx) + lows)
    sparse = min(streams, key=lambda k: (len(streams[k]), k != "elias"))  # ties: delta
    bodies = {"dense": to_bytes(dense), "elias": to_bytes(streams[sparse]),
              "ans": reference_ans(levels)}
    coding = codec.coding
    if coding == "auto":            # the shorter of Elias and dense; rANS if shorter still
        coding = "elias" if len(bodies["elias"]) < len(bodies["dense"]) else "dense"
        if 16 * idx.size >= d and len(bodies["ans"]) < len(bodies[coding]):
            coding = "ans"
    codes = {"elias": 1, "dense": 2, "elias-gamma": 3, "ans": 4}
    payload = (PARAMS.pack(s, codec.bucket_size or 0, {"l2": 1, "max": 2}[codec.norm],
                           codes[sparse if coding == "elias" else coding], exponent)
               + f32.tobytes() + bodies[coding])
    return HEADER.pack(b"RRLC", 4, b"qsgd", d, len(payload)) + payload


def test_messages_are_the_spec_written_out():
    rng = np.random.default_rng(11)
    for case in range(120):
        d = int(rng.choice([1, 2, 7, 8, 9, 63, 64, 65, 300, 2000]))
        kw = dict(levels=int(rng.choice([1, 2, 3, 7, 16, 127, 128, 255, 1000, 70000])),
                  bucket_size=[None, 1, 5, 64][case % 4], norm=["l2", "max"][case % 2],
                  coding=["auto", "elias", "dense", "ans"][case // 4 % 4])
        v = rng.standard_normal(d) * rng.choice([1e-200, 1.0, 1e200])
        v[rng.random(d) < 0.3] = 0.0
        if case % 5 == 0:
            v = (v / np.abs(v).max(initial=1.0)).astype(np.float32)
        codec = QSGD(**kw)
        assert codec.encode(v, rng=np.random.default_rng(case)) == \
            reference_message(codec, v, case), (kw, d)


# --------------------------------------------------------------------------- hostile bytes
def with_payload_len(msg: bytes) -> bytes:
    """``msg`` with its header's payload length made consistent with its length."""
    return msg[:21] + struct.pack("<Q", len(msg) - HEADER_SIZE) + msg[HEADER_SIZE:]


@pytest.mark.parametrize("kw, coding", [
    (dict(levels=1, coding="elias"), 1), (dict(levels=255, coding="elias"), 3),
    (dict(levels=16, coding="dense"), 2), (dict(levels=2 ** 31 - 1, coding="dense"), 2),
    (dict(levels=5, bucket_size=7, norm="max", coding="dense"), 2),
    (dict(levels=141, coding="ans"), 4), (dict(levels=70000, bucket_size=9, coding="ans"), 4)])
def test_cut_or_extended_bodies_are_rejected_with_a_consistent_header(kw, coding):
    codec = QSGD(**kw)
    d = 5000 if coding == 1 else 300
    msg = codec.encode(np.random.default_rng(0).standard_normal(d),
                       rng=np.random.default_rng(1))
    assert msg[CODING_AT] == coding
    for n in range(HEADER_SIZE, len(msg)):
        with pytest.raises(CodecError):
            codec.decode(with_payload_len(msg[:n]))
    for extra in (b"\0", b"\x80", b"\xff" * 3, b"\0" * 9):
        with pytest.raises(CodecError):
            codec.decode(with_payload_len(msg + extra))


def sparse(body_bits: str, d: int = 10 ** 6, levels: int = 4) -> bytes:
    bits = body_bits + "0" * (-len(body_bits) % 8)
    payload = (PARAMS.pack(levels, 0, 1, 1, 0) + np.float32(1).tobytes()
               + int(bits, 2).to_bytes(len(bits) // 8, "big"))
    return HEADER.pack(b"RRLC", 4, b"qsgd", d, len(payload)) + payload


def test_long_hostile_streams_fail_fast():
    codec = QSGD(levels=4)
    count = "".join(gamma(17)) + format(1, "016b")  # delta(2**16 + 1): 65536 nonzeros
    cases = {"ran out": count + "0" * (1 << 20),                  # no codeword ever ends
             "-bit tail": count + "0" * 40 + "1" * (1 << 18),     # one unary run too long
             "ran out in the codeword tail": count + "01" * (1 << 17) + "0" * (1 << 17)}
    for match, bits in cases.items():
        with pytest.raises(CodecError, match=match):
            codec.decode(sparse(bits))
    with pytest.raises(CodecError, match="count"):
        codec.decode(sparse("0" * (1 << 20)))


def test_kernels_are_cached_on_disk():
    """Fresh processes (Ray workers) load the machine code instead of compiling."""
    from ray_relu.codecs import _ans, _dense, _kernels, _pcg64, _quantize
    kernels = [getattr(m, name) for m in (_kernels, _quantize, _dense, _ans, _pcg64)
               for name in m.__all__]
    compiled = [fn for fn in kernels if hasattr(fn, "signatures")]
    assert len(compiled) >= 9
    for fn in compiled:
        assert fn.signatures, fn                            # compiled eagerly
        assert type(fn._cache).__name__ == "FunctionCache", fn


# --------------------------------------------------------------------------- the draws
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 129, 4097, 100_003])
def test_compiled_pcg64_draws_numpys_stream(n):
    """Interleaved lanes give Generator.random's doubles, bit for bit, and leave
    the state where numpy's draw does (including 128-bit carries: spawned keys)."""
    from ray_relu.codecs import _pcg64
    for seed in (0, 7, np.random.SeedSequence(3, spawn_key=(4, 2, 1))):
        ours, numpys = np.random.default_rng(seed), np.random.default_rng(seed)
        state = _pcg64.state_of(ours)
        out = np.full(n, -1.0)
        _pcg64.fill(state, out)
        assert np.array_equal(out, numpys.random(n)), (seed, n)
        _pcg64.store(ours, state)
        assert ours.bit_generator.state == numpys.bit_generator.state


def test_encoding_draws_as_numpy_would_for_any_generator():
    """The compiled draw (numpy's PCG64) and numpy's own draw (anything else with a
    ``random`` method) quantize alike, and the generator ends where ``random(d)``
    leaves it, its buffered 32 bits included."""
    class NumpyDraws:                               # hides the bit generator
        def __init__(self, rng):
            self.rng = rng

        def random(self, *args, **kwargs):
            return self.rng.random(*args, **kwargs)

    v = np.random.default_rng(1).standard_normal(70_001)
    for kw in (dict(levels=16), dict(levels=3, bucket_size=500, norm="max")):
        codec = QSGD(**kw)
        compiled, numpys = np.random.default_rng(9), np.random.default_rng(9)
        for rng in (compiled, numpys):
            rng.integers(2 ** 32, dtype=np.uint32)  # sets the 32-bit buffer
        assert codec.encode(v, rng=compiled) == codec.encode(v, rng=NumpyDraws(numpys))
        assert compiled.bit_generator.state == numpys.bit_generator.state
        assert np.array_equal(compiled.random(3), numpys.random(3))
    philox = QSGD(levels=4).encode(v, rng=np.random.Generator(np.random.Philox(2)))
    assert philox == QSGD(levels=4).encode(
        v, rng=NumpyDraws(np.random.Generator(np.random.Philox(2))))


def test_cache_falls_back_to_a_writable_directory(monkeypatch):
    from ray_relu.codecs import _kernels
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert _kernels.fallback_cache_dir() is None            # this checkout is writable
    monkeypatch.setattr(_kernels.os, "access", lambda path, mode: False)
    assert "ray_relu-numba" in _kernels.fallback_cache_dir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere")
    assert _kernels.fallback_cache_dir() is None            # the user's choice stands


def ans_message(body: bytes, d: int, levels: int = 4) -> bytes:
    payload = PARAMS.pack(levels, 0, 1, 4, 0) + np.float32(1).tobytes() + body
    return HEADER.pack(b"RRLC", 4, b"qsgd", d, len(payload)) + payload


@pytest.mark.parametrize("bucket", [None, 300, 5])     # table reader, and bit by bit
@pytest.mark.parametrize("at", [0, 3, 8, 517, 998])     # head, group and tail fields
def test_hostile_dense_fields_are_found_wherever_they_sit(bucket, at):
    """A level above s or a -0 field, planted in a real dense body, is reported with
    the largest level; the untouched body decodes to the spec's values."""
    codec = QSGD(levels=5, bucket_size=bucket, coding="dense")    # 4-bit fields
    d = 999
    msg = codec.encode(np.random.default_rng(at).standard_normal(d), rng=np.random.default_rng(0))
    nb = -(-d // (bucket or d))
    start = HEADER_SIZE + PARAMS.size + 4 * nb
    body = bytearray(msg[start:])
    levels = np.array([(body[i // 2] >> (4 * (1 - i % 2))) & 15 for i in range(d)])
    signed = np.where(levels & 8, -(levels & 7), levels & 7)
    scales = np.repeat(np.frombuffer(msg[start - 4 * nb:start], "<f4").astype(np.float64),
                       bucket or d)[:d]
    exponent = PARAMS.unpack_from(msg, HEADER_SIZE)[4]
    np.testing.assert_array_equal(codec.decode(msg), signed * (np.ldexp(scales, exponent) / 5))

    def planted(code: int) -> bytes:
        b = body.copy()
        shift = 4 * (1 - at % 2)
        b[at // 2] = (b[at // 2] & ~(15 << shift) & 0xFF) | (code << shift)
        return msg[:start] + bytes(b)

    for code, words in ((7, "level 7 exceeds levels=5"), (15, "level 7 exceeds levels=5"),
                        (6, "level 6 exceeds levels=5"),
                        (8, "dense qsgd body holds a negative zero level")):
        with pytest.raises(CodecError, match=words):
            codec.decode(planted(code))


def test_hostile_ans_bodies_name_what_is_wrong():
    codec = QSGD(levels=4)
    levels = np.array([0, 1, -2, 0, 3, 0, 0, -1])
    np.testing.assert_array_equal(codec.decode(ans_message(reference_ans(levels), 8)),
                                  levels / 4)
    one_symbol = to_bytes("000000" + delta(2 ** 14 + 1))          # n = 1, f = 2**14
    cases = {
        "frequency table": (to_bytes("000000" + delta(2 ** 14)), 1),   # sums to 2**14 - 1
        "malformed frequency": (to_bytes("000001" + delta(2 ** 14 + 1) + delta(1)), 1),
        "below 2\\*\\*16": (one_symbol + (2 ** 16 - 1).to_bytes(8, "little"), 1),
        "initial state": (one_symbol + (2 ** 16 * (2 ** 32 + 1) + 1).to_bytes(8, "little"), 1),
        "ran out in the coder": (one_symbol + b"\0\0\1\0\0\0\1", 1),
        "level 5 exceeds levels=4": (reference_ans(np.array([5, 0])), 2),
        "sign and escape": (reference_ans(np.array([1, 0]))[:-1], 2),
    }
    for match, (body, d) in cases.items():
        with pytest.raises(CodecError, match=match):
            codec.decode(ans_message(body, d))
