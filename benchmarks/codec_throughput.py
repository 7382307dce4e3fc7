"""Codec throughput: QSGD and FP16 encode + decode of a d = 10**6 float32 vector.

QSGD draws one uniform number per coordinate, so its natural floor is drawing ``d``
uniforms, ``np.random.default_rng(seed).random(d)``; everything else it does (scale,
multiply, floor, find nonzeros, bit coding, decoding) is overhead on top of that.
For each ``s`` in {1, 4, 16, 255}, encode and decode of the Elias and the dense
coding are timed round-robin with the floor (``interleaved_medians``), so machine
noise hits them alike; the table reports medians and ``(encode + decode) / floor``.
FP16 is timed the same way against a bare ``astype(float16)`` round trip.

Goal: QSGD encode + decode <= 3x the floor at s = 16.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks._common import interleaved_medians, parse_args, print_table, write_json
from ray_relu.codecs import get_codec

D = 10 ** 6
LEVELS = (1, 4, 16, 255)
CODINGS = ("elias", "dense")
GOAL_LEVELS, GOAL_RATIO = 16, 3.0
SEED = 0


def qsgd_rows(v: np.ndarray, repeats: int) -> list[dict[str, Any]]:
    """One row per (s, coding): encode/decode medians and the ratio to the floor."""
    floor_rng = np.random.default_rng(SEED)
    rows = []
    for s in LEVELS:
        fns = {"floor": lambda: floor_rng.random(D)}
        sizes = {}
        for coding in CODINGS:
            codec = get_codec("qsgd", levels=s, coding=coding, seed=SEED)
            msg = codec.encode(v)
            sizes[coding] = len(msg)
            fns[f"{coding} enc"] = lambda c=codec: c.encode(v)
            fns[f"{coding} dec"] = lambda c=codec, m=msg: c.decode(m)
        med = interleaved_medians(fns, repeats=repeats, warmup=2)
        for coding in CODINGS:
            enc, dec = med[f"{coding} enc"], med[f"{coding} dec"]
            rows.append({"s": s, "coding": coding, "bits/coord": 8 * sizes[coding] / D,
                         "floor ms": 1e3 * med["floor"], "encode ms": 1e3 * enc,
                         "decode ms": 1e3 * dec, "enc+dec ms": 1e3 * (enc + dec),
                         "ratio": (enc + dec) / med["floor"]})
    return rows


def fp16_rows(v: np.ndarray, repeats: int) -> list[dict[str, Any]]:
    """FP16 codec round trip against numpy's bare cast round trip."""
    codec = get_codec("fp16")
    fns = {"astype round trip": lambda: v.astype(np.float16).astype(np.float64),
           "fp16 codec enc+dec": lambda: codec.decode(codec.encode(v))}
    med = interleaved_medians(fns, repeats=repeats, warmup=2)
    base = med["astype round trip"]
    return [{"candidate": name, "ms": 1e3 * t, "ratio": t / base} for name, t in med.items()]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(__doc__.splitlines()[0], argv)
    repeats = 9 if args.quick else 31
    v = np.random.default_rng(SEED).standard_normal(D).astype(np.float32)
    qsgd = qsgd_rows(v, repeats)
    print_table(qsgd, f"QSGD encode + decode, d = {D:,} float32, median of {repeats} "
                      f"(interleaved with the floor rng.random(d))")
    fp16 = fp16_rows(v, repeats)
    print_table(fp16, f"FP16, d = {D:,} float32, median of {repeats}")
    goal = {c: r["ratio"] for r in qsgd for c in CODINGS
            if r["s"] == GOAL_LEVELS and r["coding"] == c}
    for coding, ratio in goal.items():
        verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
        print(f"goal (s={GOAL_LEVELS}, {coding}): {ratio:.2f}x the floor, target <= "
              f"{GOAL_RATIO}x: {verdict}")
    result = {"d": D, "repeats": repeats, "quick": args.quick, "qsgd": qsgd, "fp16": fp16,
              "goal": {"levels": GOAL_LEVELS, "max_ratio": GOAL_RATIO, "ratios": goal}}
    write_json("codec_throughput", result, args.out)
    return result


if __name__ == "__main__":
    main()
