"""Each codec's round time against its physical floor on the emulated cluster (item 6).

Floor of one round = bytes on the busiest one-way pipe / link rate + one worker-head
round trip of link latency + the measured compute and encode/decode time (see
``benchmarks/_wire_model.py`` for where Ray physically moves each message). The
measured round is the median wall time of a round inside ``fit`` (150 rounds, the
first two dropped) on the emulated cluster (3 worker nodes, head = driver, 100 mbit,
1 ms where the kernel has netem), 64 rows per worker.

Goal: <= 1.5x the floor for fp32 and for the best QSGD at d = 1e4, 100 mbit. The rest
(``overhead_ms`` = round - floor) is what Ray adds per round: task submission and
scheduling, (de)serialization, object-store puts and pulls, the stats reply; the
``coordinator_overhead`` benchmark measures that part on loopback.
``--quick``: d = 1e3.
"""

from __future__ import annotations

import math

from benchmarks._common import parse_args, print_table, write_json
from benchmarks._wire_model import effective_delay, round_floor_s
from benchmarks.cluster_time_to_accuracy import (BENCH_CLUSTER_ID, DELAY, WORKERS,
                                                 run_on_cluster)

RATE = "100mbit"
ROUNDS = 150          # rounds timed per setting (the fit runs exactly this many)
GOAL = 1.5


def settings(d: int) -> list[dict]:
    """fp32 and QSGD at s = sqrt(d) and 4 sqrt(d), master and all-to-all."""
    root = int(round(math.sqrt(d)))
    out = []
    for mode in ("master", "all-to-all"):
        for codec, options in (("fp32", {}), ("qsgd", {"levels": root}),
                               ("qsgd", {"levels": 4 * root})):
            label = codec + (f" s={options['levels']}" if options else "")
            downlink = None
            if mode == "master":
                downlink = codec if codec != "qsgd" else {"id": "qsgd", **options}
            out.append({"codec": codec, "options": options, "mode": mode,
                        "downlink": downlink, "label": f"{label} {mode}"})
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)
    from ray_relu.emulated import EmulatedCluster

    d = 1000 if args.quick else 10000
    with EmulatedCluster(nodes=WORKERS + 1, rate=RATE, delay=DELAY, cpus_per_node=1,
                         head_cpus=0, cluster_id=BENCH_CLUSTER_ID) as cluster:
        shaping = cluster.info["shaping"]
        rows = run_on_cluster(cluster, d, settings(d), rounds=ROUNDS)
    delay = effective_delay(shaping, DELAY)
    print(f"links: {shaping}")
    table = []
    for row in rows:
        floor = round_floor_s(row, RATE, delay)
        table.append({
            "setting": row["label"], "round_ms": 1e3 * row["round_s"],
            "floor_ms": 1e3 * floor["floor_s"], "ratio": row["round_s"] / floor["floor_s"],
            "wire_ms": 1e3 * floor["wire_s"], "latency_ms": 1e3 * floor["latency_s"],
            "compute_ms": 1e3 * row["compute_s"], "codec_ms": 1e3 * row["encode_s"],
            "overhead_ms": 1e3 * (row["round_s"] - floor["floor_s"]),
            "pipe": floor["busiest_pipe"], "KB_busiest": floor["busiest_bytes"] / 1e3,
            "goal": GOAL,
        })
    print_table(table, f"round time vs physical floor, d={d}, {RATE}, delay {delay}, "
                f"K={WORKERS}")
    payload = {"quick": args.quick, "d": d, "rate": RATE, "delay": delay, "shaping": shaping,
               "rows": table,
               "raw": rows}
    write_json("against_the_wire", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
