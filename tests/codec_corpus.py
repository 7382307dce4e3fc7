"""A corpus pinning the codecs' bytes: (vector recipe, seed, codec config) -> hashes.

``tests/data/codec_corpus.json`` was first written by the pure-numpy codec (format
version 2) before the compiled kernels replaced it; ``tests/test_codec_kernels.py``
asserts every entry still hashes the same. Format version 3 moved the codec parameters
from the shared header into the payloads and the file was rewritten: every ``dec`` hash
stayed as it was, and every new message was checked to be the version-2 message with
its header fields rearranged, byte for byte. Format version 4 added QSGD's rANS coding
(and the cases at the end that pin it): on the rewrite every ``dec`` hash stayed, and
every message that is not rANS-coded was checked to be the version-3 message with the
version byte changed. Each case hashes three things:

* ``msg``: the messages of two successive encodes with one generator (pins the bytes),
* ``dec``: the decoded float64 vectors (pins the decoder),
* ``msg`` also covers one more ``rng.random()`` drawn after the encodes, which pins how
  many uniforms an encode consumes.

Rewrite the file only on a deliberate format change (and then bump FORMAT_VERSION)::

    .venv/bin/python tests/codec_corpus.py --write
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

PATH = Path(__file__).parent / "data" / "codec_corpus.json"
RECIPES = ("normal", "mixed", "zeros", "tiny", "subnormal", "huge", "float32", "onehot",
           "sparse", "equal", "ramp", "ints", "negzero")
DIMS = (1, 2, 3, 5, 7, 8, 9, 13, 63, 64, 65, 100, 1000, 4097, 10_000, 100_003)
LEVELS = (1, 2, 3, 4, 7, 8, 15, 16, 31, 63, 64, 100, 126, 127, 128, 255, 256, 1000,
          32766, 32767, 32768, 65535, 70000)
BUCKETS = (None, 1, 2, 3, 64, 512, 4096)


def vector(recipe: str, d: int, seed: int) -> np.ndarray:
    """The test vector a recipe names (deterministic in ``seed``)."""
    rng = np.random.default_rng([seed, d, RECIPES.index(recipe)])
    g = rng.standard_normal(d)
    if recipe == "normal":
        return g
    if recipe == "mixed":
        v = g * rng.choice([1e-3, 1.0, 100.0], size=d)
        v[::7] = 0.0
        return v
    if recipe == "zeros":
        return np.zeros(d)
    if recipe == "tiny":
        return g * 1e-300
    if recipe == "subnormal":                      # multiples of the smallest subnormal
        return rng.integers(-1000, 1000, d) * 5e-324
    if recipe == "huge":
        return g * 1e300
    if recipe == "float32":
        return (g * 3.0).astype(np.float32)
    if recipe == "onehot":
        v = np.zeros(d)
        v[int(rng.integers(0, d))] = -2.5
        return v
    if recipe == "sparse":
        return np.where(rng.random(d) < 0.01, g, 0.0)
    if recipe == "equal":                          # |x| = s exactly: the s + 1 clamp
        return np.full(d, 0.75) * rng.choice([-1.0, 1.0], size=d)
    if recipe == "ramp":
        return np.linspace(-1.0, 1.0, d)
    if recipe == "ints":
        return rng.integers(-3, 4, d).astype(np.float64)
    if recipe == "negzero":                        # signed zeros, a few nonzeros
        return np.where(rng.random(d) < 0.9, -0.0, np.where(rng.random(d) < 0.5, 0.0, g))
    raise ValueError(recipe)


def cases() -> list[dict[str, Any]]:
    """Every (recipe, d, seed, codec config) of the corpus, in a fixed order."""
    out = []
    # every recipe x dimension with a few standard configs
    standard = [dict(levels=16), dict(levels=1, coding="elias"), dict(levels=4, coding="dense"),
                dict(levels=255, bucket_size=64, norm="max"),
                dict(levels=70000, bucket_size=3, coding="dense")]
    for i, (recipe, d) in enumerate(itertools.product(RECIPES, DIMS[:-1])):
        for kw in (standard[0], standard[1 + i % 4]):
            out.append(dict(recipe=recipe, d=d, seed=1, codec=kw))
    # every level x coding x norm on a few vectors (levels around the dense type limits)
    for s, coding, norm in itertools.product(LEVELS, ("auto", "elias", "dense"), ("l2", "max")):
        for d, bucket in ((9, None), (4097, 512)):
            out.append(dict(recipe="mixed", d=d, seed=s, codec=dict(
                levels=s, bucket_size=bucket, norm=norm, coding=coding)))
    # seeded random combinations
    rng = np.random.default_rng(2024)
    for i in range(200):
        kw = dict(levels=int(rng.choice(LEVELS)), bucket_size=rng.choice(BUCKETS),
                  norm=str(rng.choice(["l2", "max"])),
                  coding=str(rng.choice(["auto", "elias", "dense"])))
        kw["bucket_size"] = None if kw["bucket_size"] is None else int(kw["bucket_size"])
        out.append(dict(recipe=str(rng.choice(RECIPES)), d=int(rng.choice(DIMS)),
                        seed=100 + i, codec=kw))
    # large vectors: the chunked code paths
    for kw in (dict(levels=16), dict(levels=16, coding="dense"), dict(levels=255),
               dict(levels=1000, coding="elias", bucket_size=4096),
               dict(levels=2, norm="max", coding="dense")):
        out.append(dict(recipe="normal", d=1_000_000, seed=7, codec=kw))
    out.append(dict(recipe="mixed", d=300_001, seed=8, codec=dict(levels=31, norm="max")))
    # rANS coding (format version 4): levels x norm x buckets, and the chunked paths
    for s, norm in itertools.product(LEVELS, ("l2", "max")):
        for d, bucket in ((9, None), (4097, 512), (10_000, None)):
            out.append(dict(recipe="normal", d=d, seed=s, codec=dict(
                levels=s, bucket_size=bucket, norm=norm, coding="ans")))
    out.append(dict(recipe="normal", d=1_000_000, seed=9, codec=dict(levels=16, coding="ans")))
    out.append(dict(recipe="mixed", d=100_003, seed=9, codec=dict(levels=141)))
    # exact codecs
    for name, recipe, d in itertools.product(("fp64", "fp32", "fp16"),
                                             ("mixed", "tiny", "float32", "zeros"), (1, 13, 4097)):
        if name == "fp32" and recipe == "tiny":
            continue                                # flushes to zero, fine but pointless
        out.append(dict(recipe=recipe, d=d, seed=3, codec=dict(id=name)))
    return out


def _digest(chunks: list[bytes]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(len(c).to_bytes(8, "little"))
        h.update(c)
    return h.hexdigest()[:16]


def run_case(case: dict[str, Any]) -> dict[str, str]:
    """``{"msg": ..., "dec": ...}`` hashes of a case, with the codec under test now."""
    from ray_relu.codecs import get_codec
    kw = dict(case["codec"])
    codec = get_codec(kw.pop("id", "qsgd"), **kw)
    v = vector(case["recipe"], case["d"], case["seed"])
    rng = np.random.default_rng(case["seed"])
    msgs = [codec.encode(v, rng=rng) for _ in range(2)]
    after = np.float64(rng.random()).tobytes()
    return {"msg": _digest(msgs + [after]),
            "dec": _digest([codec.decode(m).tobytes() for m in msgs])}


def main(argv: list[str]) -> None:
    if argv != ["--write"]:
        sys.exit(__doc__)
    from ray_relu.codecs.base import HEADER_SIZE
    from ray_relu.codecs.qsgd import CODINGS
    entries, seen = [], set()
    for case in cases():
        entries.append({**case, **run_case(case)})
    for case in cases():                            # which codings the corpus covers
        kw = dict(case["codec"])
        if "id" not in kw:
            from ray_relu.codecs import QSGD
            msg = QSGD(**kw).encode(vector(case["recipe"], case["d"], case["seed"]),
                                    rng=np.random.default_rng(case["seed"]))
            seen.add(msg[HEADER_SIZE + 9])     # levels u32, bucket u32, norm u8, coding u8
    names = {v: k for k, v in CODINGS.items()}
    assert {names[c] for c in seen} == {"elias", "elias-gamma", "dense", "ans"}, seen
    PATH.parent.mkdir(exist_ok=True)
    PATH.write_text(json.dumps(entries, separators=(",", ":")).replace("},{", "},\n{") + "\n")
    print(f"wrote {len(entries)} cases to {PATH}")


if __name__ == "__main__":
    main(sys.argv[1:])
