"""Bare all-to-all transports on the emulated cluster: relay, pull and push, no compute.

Could all-to-all move its small messages (a few kB) worker to worker faster than the
engine's relay through the driver? ``benchmarks._transport_runs`` times the three ways
Ray can carry them (relay through the driver's replies; ``ray.put`` by the sender and
``ray.get`` by the peers, as ``route="p2p"``; a direct actor call from the sender to
each peer) with nothing else in the round, on one cluster (CPU-less head, three
one-CPU worker hosts, tbf shaping), at each link rate and message size; reported: round
time and bytes per round on the head's and the workers' links (veth counters over the
timed rounds, Ray's own traffic included).

Needs root (``bash cluster/install-deps.sh``). ``--quick``: one size, 100 rounds.
Cluster id: ``RAY_RELU_EMU_ID`` (default 7).
"""

from __future__ import annotations

import os

from benchmarks._common import parse_args, print_table, write_json

RATES = ("10mbit", "100mbit", "1gbit")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)
    from benchmarks import _transport_runs
    from benchmarks._fit_timing import load_average
    from benchmarks._links import LinkSampler
    from benchmarks.cluster_time_to_accuracy import (BENCH_CLUSTER_ID, DELAY, REPO,
                                                     WORKERS)
    from benchmarks.peers import per_round_bytes
    from ray_relu.emulated import EmulatedCluster

    sizes = [6000] if args.quick else [6000, 60000]
    rounds = 100 if args.quick else 300
    load_before = load_average()
    rows: list[dict] = []
    cluster_id = int(os.environ.get("RAY_RELU_EMU_ID", BENCH_CLUSTER_ID))
    with EmulatedCluster(nodes=WORKERS + 1, rate=RATES[0], delay=DELAY, cpus_per_node=1,
                         head_cpus=0, cluster_id=cluster_id) as cluster:
        with LinkSampler(cluster) as sampler:
            for rate in RATES:
                cluster.shape(rate, DELAY)
                for size in sizes:
                    job = cluster.submit(
                        ["python", "-m", "benchmarks._transport_runs", "--bytes", str(size),
                         "--rounds", str(rounds), "--workers", str(WORKERS)],
                        working_dir=REPO, timeout=1800)
                    for run in job.results(_transport_runs.MARK):
                        start, stop = run["window"]
                        b = per_round_bytes(sampler.between(start, stop), run["window_rounds"])
                        rows.append({"rate": rate, "bytes": size,
                                     "transport": run["transport"],
                                     "round_ms": run["round_ms"],
                                     "round_mean_ms": run["round_mean_ms"],
                                     "head_in_kB": b["head_in"] / 1e3,
                                     "head_out_kB": b["head_out"] / 1e3,
                                     "wkr_in_kB": b["worker_in"] / 1e3,
                                     "wkr_out_kB": b["worker_out"] / 1e3})
                print_table([r for r in rows if r["rate"] == rate],
                            f"{rate}, K={WORKERS}, {rounds} timed rounds, {DELAY} delay")
    payload = {"rounds": rounds, "load_average": [load_before, load_average()],
               "rows": rows}
    write_json("transports", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
