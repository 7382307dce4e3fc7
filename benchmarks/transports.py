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

from benchmarks._common import parse_args, print_table, write_json

RATES = ("10mbit", "100mbit", "1gbit")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)
    from benchmarks import _transport_runs
    from benchmarks._fit_timing import load_average
    from benchmarks._links import link_kB, sampled_cluster
    from benchmarks.cluster_time_to_accuracy import DELAY, REPO, WORKERS

    sizes = [6000] if args.quick else [6000, 60000]
    rounds = 100 if args.quick else 300
    load_before = load_average()
    rows: list[dict] = []
    with sampled_cluster(RATES[0]) as (cluster, sampler):
        for rate in RATES:
            cluster.shape(rate, DELAY)
            for size in sizes:
                job = cluster.submit(
                    ["python", "-m", "benchmarks._transport_runs", "--bytes", str(size),
                     "--rounds", str(rounds), "--workers", str(WORKERS)],
                    working_dir=REPO, timeout=1800)
                rows += [{"rate": rate, "bytes": size, "transport": run["transport"],
                          "round_ms": run["round_ms"],
                          "round_mean_ms": run["round_mean_ms"], **link_kB(sampler, run)}
                         for run in job.results(_transport_runs.MARK)]
            print_table([r for r in rows if r["rate"] == rate],
                        f"{rate}, K={WORKERS}, {rounds} timed rounds, {DELAY} delay")
    payload = {"rounds": rounds, "load_average": [load_before, load_average()],
               "rows": rows}
    write_json("transports", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
