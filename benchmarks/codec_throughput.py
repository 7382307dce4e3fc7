"""Codec throughput: QSGD and FP16 encode + decode of a d = 10**6 float32 vector.

QSGD draws one uniform number per coordinate, so its natural floor is drawing ``d``
uniforms, ``np.random.default_rng(seed).random(d)``; everything else it does (scale,
multiply, floor, find nonzeros, bit coding, decoding) is overhead on top of that.
For each ``s`` in {1, 4, 16, 255}, encode and decode of the Elias and the dense
coding are timed round-robin with the floor (``interleaved_medians``), so machine
noise hits them alike. The machine is shared and its load drifts over seconds, so the
measurement is split into short trials (a few interleaved rounds each): every trial
gives medians and a ratio ``(encode + decode) / floor``, and the table reports the
median over trials of each (``ratio``), and the ratio of the best (smallest) trial
times, noise only ever adding time (``best ratio``, timeit's convention). FP16 is
timed the same way against a bare ``astype(float16)`` round trip.

Goal: QSGD encode + decode <= 3x the floor at s = 16.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks._common import interleaved_medians, parse_args, print_table, write_json
from ray_relu.codecs import get_codec

D = 10 ** 6
LEVELS = (1, 4, 16, 255)
CODINGS = ("elias", "dense")
GOAL_LEVELS, GOAL_RATIO = 16, 3.0
SEED = 0


ROUNDS_PER_TRIAL = 3


def trials(fns: dict[str, Callable[[], Any]], n_trials: int) -> list[dict[str, float]]:
    """``n_trials`` short interleaved measurements (medians of a few rounds each)."""
    out = [interleaved_medians(fns, repeats=ROUNDS_PER_TRIAL, warmup=2)]
    out += [interleaved_medians(fns, repeats=ROUNDS_PER_TRIAL, warmup=0)
            for _ in range(n_trials - 1)]
    return out


def median_over(results: list[dict[str, float]], fn: Callable[[dict], float]) -> float:
    return statistics.median(fn(r) for r in results)


def best_ratio(results: list[dict[str, float]], names: Sequence[str], base: str) -> float:
    """sum of the best trial times of ``names`` over the best trial time of ``base``."""
    return sum(min(r[n] for r in results) for n in names) / min(r[base] for r in results)


def qsgd_rows(v: np.ndarray, n_trials: int) -> list[dict[str, Any]]:
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
        res = trials(fns, n_trials)
        for coding in CODINGS:
            enc, dec = f"{coding} enc", f"{coding} dec"
            rows.append({
                "s": s, "coding": coding, "bits/coord": 8 * sizes[coding] / D,
                "floor ms": 1e3 * median_over(res, lambda r: r["floor"]),
                "encode ms": 1e3 * median_over(res, lambda r: r[enc]),
                "decode ms": 1e3 * median_over(res, lambda r: r[dec]),
                "ratio": median_over(res, lambda r: (r[enc] + r[dec]) / r["floor"]),
                "best ratio": best_ratio(res, (enc, dec), "floor")})
    return rows


def fp16_rows(v: np.ndarray, n_trials: int) -> list[dict[str, Any]]:
    """FP16 codec round trip against numpy's bare cast round trip."""
    codec = get_codec("fp16")
    fns = {"astype round trip": lambda: v.astype(np.float16).astype(np.float64),
           "fp16 codec enc+dec": lambda: codec.decode(codec.encode(v))}
    res = trials(fns, n_trials)
    base = "astype round trip"
    return [{"candidate": name, "ms": 1e3 * median_over(res, lambda r: r[name]),
             "ratio": median_over(res, lambda r: r[name] / r[base]),
             "best ratio": best_ratio(res, (name,), base)}
            for name in fns]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(__doc__.splitlines()[0], argv)
    n_trials = 7 if args.quick else 25
    v = np.random.default_rng(SEED).standard_normal(D).astype(np.float32)
    what = f"median over {n_trials} trials of {ROUNDS_PER_TRIAL} interleaved rounds"
    qsgd = qsgd_rows(v, n_trials)
    print_table(qsgd, f"QSGD encode + decode, d = {D:,} float32 ({what}, "
                      f"floor = rng.random(d))")
    fp16 = fp16_rows(v, n_trials)
    print_table(fp16, f"FP16 encode + decode, d = {D:,} float32 ({what})")
    goal = {r["coding"]: {"ratio": r["ratio"], "best ratio": r["best ratio"]}
            for r in qsgd if r["s"] == GOAL_LEVELS}
    for coding, got in goal.items():
        verdict = "met" if got["ratio"] <= GOAL_RATIO else "NOT met"
        print(f"goal (s={GOAL_LEVELS}, {coding}): {got['ratio']:.2f}x the floor "
              f"(best times {got['best ratio']:.2f}x), target <= {GOAL_RATIO}x: {verdict}")
    result = {"d": D, "trials": n_trials, "rounds_per_trial": ROUNDS_PER_TRIAL,
              "quick": args.quick, "qsgd": qsgd, "fp16": fp16,
              "goal": {"levels": GOAL_LEVELS, "max_ratio": GOAL_RATIO, "ratios": goal}}
    write_json("codec_throughput", result, args.out)
    return result


if __name__ == "__main__":
    main()
