"""Bits on the wire: QSGD message sizes per coordinate against the paper's bound and fp32.

For d in {1e2, ..., 1e6} and s in {1, 2, 4, 16, sqrt(d), 255} a standard normal
vector (seeded) is encoded a few times with the Elias, the dense and the rANS coding;
the table gives the mean bits per coordinate of

* ``elias payload``: what the QSGD paper counts, the 32-bit scale and the bit stream
  (which opens with the number of nonzeros, Elias-coded), i.e. the message without
  its 29-byte header and 12-byte parameter block;
* ``elias msg`` / ``dense msg`` / ``ans msg``: whole messages, header included;
* ``bound``: Theorem 3.2 of Alistarh et al. (2017) with the o(1) term dropped,
  ``(3 + 3/2 log2(2(s^2 + d) / (s(s + sqrt d)))) s(s + sqrt d) + 32`` bits, whose
  leading term is for the Elias-omega coded stream;
* ``32`` for fp32 (plus its header: ``fp32 msg``).

``elias/bound`` is the payload over the bound (goal: <= 1.05); ``winner`` is the
coding ``coding="auto"`` sends (the shortest, rANS tried where >= 1/16 of the levels
are nonzero), ``ans/elias`` what rANS saves over Elias. A second table compares Elias
gamma, delta and omega for the gaps and levels of the same quantized vectors (code
lengths computed from the levels): the codec codes levels in gamma and gaps in delta
or gamma, whichever is shorter for the message (``ours``). A third puts
``s = sqrt(d)`` next to the paper's sharper ``2.8 d + 32`` figure for that setting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks._common import parse_args, print_table, write_json
from ray_relu.codecs import get_codec
from ray_relu.codecs.base import HEADER_SIZE
from ray_relu.codecs.bitcoding import delta_length, gamma_length, omega_length
from ray_relu.codecs.qsgd import CODINGS, PARAMS_SIZE

CODING_NAMES = {code: name for name, code in CODINGS.items()}
CODING_OFFSET = 9                  # of the coding byte in QSGD's parameter block

DIMS = (10 ** 2, 10 ** 3, 10 ** 4, 10 ** 5, 10 ** 6)
GOAL = 1.05
SEED = 0
CODES = {"gamma": gamma_length, "delta": delta_length, "omega": omega_length}


def paper_bound(s: int, d: int) -> float:
    """QSGD Theorem 3.2 (o(1) dropped): expected bits of the Elias-coded message."""
    k = s * (s + math.sqrt(d))
    return (3 + 1.5 * math.log2(2 * (s * s + d) / k)) * k + 32


def levels_for(d: int) -> list[int]:
    return sorted({1, 2, 4, 16, math.isqrt(d), 255})


def measure(d: int, s: int, draws: int, v: np.ndarray) -> tuple[dict, dict]:
    """(size row, Elias-family row) for one (d, s), averaged over ``draws`` encodings."""
    rng = np.random.default_rng([SEED, d, s])
    elias = get_codec("qsgd", levels=s, coding="elias")
    dense = get_codec("qsgd", levels=s, coding="dense")
    ans = get_codec("qsgd", levels=s, coding="ans")
    auto = get_codec("qsgd", levels=s)
    e_bits, d_bits, a_bits, winners, family = [], [], [], set(), {}
    for _ in range(draws):
        seed = int(rng.integers(2 ** 63))
        e_bits.append(8 * len(elias.encode(v, rng=np.random.default_rng(seed))))
        d_bits.append(8 * len(dense.encode(v, rng=np.random.default_rng(seed))))
        a_bits.append(8 * len(ans.encode(v, rng=np.random.default_rng(seed))))
        sent = auto.encode(v, rng=np.random.default_rng(seed))[HEADER_SIZE + CODING_OFFSET]
        winners.add(CODING_NAMES[sent].split("-")[0])
        _, levels = elias.quantize(v, rng=np.random.default_rng(seed))
        idx = np.flatnonzero(levels)
        gaps = np.diff(idx, prepend=-1)
        mags = np.abs(levels[idx])
        for gname, gcode in CODES.items():
            for lname, lcode in CODES.items():
                bits = int(gcode(gaps).sum() + lcode(mags).sum()) + idx.size   # + signs
                family.setdefault(f"{gname}+{lname}", []).append(bits)
    elias_msg, dense_msg = float(np.mean(e_bits)), float(np.mean(d_bits))
    ans_msg = float(np.mean(a_bits))
    payload = elias_msg - 8 * (HEADER_SIZE + PARAMS_SIZE)
    bound = paper_bound(s, d)
    fp32_msg = 8 * len(get_codec("fp32").encode(v))
    size = {"d": d, "s": s,
            "elias payload": payload / d, "elias msg": elias_msg / d,
            "dense msg": dense_msg / d, "ans msg": ans_msg / d, "bound": bound / d,
            "fp32 msg": fp32_msg / d, "elias/bound": payload / bound,
            "ans/elias": ans_msg / elias_msg, "winner": "/".join(sorted(winners))}
    fam = {"d": d, "s": s, **{k: float(np.mean(b)) / d for k, b in family.items()}}
    fam["ours"] = float(np.mean(np.minimum(family["delta+gamma"], family["gamma+gamma"]))) / d
    fam["best"] = min(family, key=lambda k: np.mean(family[k]))
    return size, fam


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(__doc__.splitlines()[0], argv)
    draws = 3 if args.quick else 10
    sizes, families = [], []
    for d in DIMS:
        v = np.random.default_rng([SEED, d]).standard_normal(d)
        for s in levels_for(d):
            size, fam = measure(d, s, draws, v)
            sizes.append(size)
            families.append(fam)
    print_table(sizes, f"QSGD bits per coordinate (mean of {draws} draws, standard normal "
                       f"vector); bound = QSGD Theorem 3.2")
    keep = ("d", "s", "delta+gamma", "gamma+gamma", "delta+delta", "omega+omega",
            "omega+gamma", "ours", "best")
    print_table([{k: f[k] for k in keep} for f in families],
                "Elias codes for (gaps + levels), bits per coordinate incl. signs "
                "(ours: the shorter of delta+gamma and gamma+gamma per message)")
    sqrt_rows = [{"d": r["d"], "s": r["s"], "elias payload": r["elias payload"],
                  "paper 2.8 + 32/d": 2.8 + 32 / r["d"],
                  "ratio": r["elias payload"] / (2.8 + 32 / r["d"])}
                 for r in sizes if r["s"] == math.isqrt(r["d"])]
    print_table(sqrt_rows, "s = sqrt(d) against the paper's 2.8 d + 32 bits")
    worst = max(sizes, key=lambda r: r["elias/bound"])
    verdict = "met" if worst["elias/bound"] <= GOAL else "NOT met"
    print(f"goal: Elias payload <= {GOAL} x bound everywhere: {verdict} (worst "
          f"{worst['elias/bound']:.3f} at d={worst['d']}, s={worst['s']})")
    dense_wins = [(r["d"], r["s"]) for r in sizes if "dense" in r["winner"]]
    print(f"auto sends dense packing at (d, s) = {dense_wins}")
    saving = [r["ans/elias"] for r in sizes]
    print(f"rANS against Elias: {min(saving):.2f}x to {max(saving):.2f}x the bytes")
    result = {"draws": draws, "quick": args.quick, "sizes": sizes, "elias_family": families,
              "sqrt_d": sqrt_rows, "goal": {"max_ratio": GOAL, "worst": worst},
              "dense_wins": dense_wins}
    write_json("bits_on_wire", result, args.out)
    return result


if __name__ == "__main__":
    main()
