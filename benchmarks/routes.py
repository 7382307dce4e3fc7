"""All-to-all routes on the emulated cluster: ``route="relay"``, ``"p2p"`` and ``"push"``.

Which way should small gradient messages (a few kB) travel between K = 3 worker hosts:
relayed inline through the driver on the head (Ray's default for objects under
100 KiB), kept in the senders' object stores and pulled by the peers, or pushed by the
senders to the peers in actor calls of their own? The same fit
(d = 1e4, QSGD, 64 rows per worker per round, all-to-all) runs both ways, side by side
on one cluster (CPU-less head, three one-CPU worker hosts, tbf shaping), at each link
rate; reported: round time and bytes per round on the head's link and the workers'
links (veth counters over the timed rounds, Ray's own traffic included).

Needs root (``bash cluster/install-deps.sh``). ``--quick``: d = 1e3, one level.
Cluster id: ``RAY_RELU_EMU_ID`` (default 7).
"""

from __future__ import annotations

from benchmarks._common import parse_args, print_table, write_json

RATES = ("10mbit", "100mbit")


def settings(d: int, quick: bool) -> list[dict]:
    """QSGD at 4 sqrt(d) (and 2 sqrt(d) in the full profile), every route."""
    root = int(round(d ** 0.5))
    levels = [4 * root] if quick else [2 * root, 4 * root]
    return [{"codec": "qsgd", "options": {"levels": s}, "mode": "all-to-all",
             "downlink": None, "route": route, "label": f"qsgd s={s} {route}"}
            for s in levels for route in ("relay", "p2p", "push")]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)
    from benchmarks._fit_timing import load_average
    from benchmarks._links import link_kB, sampled_cluster
    from benchmarks.cluster_time_to_accuracy import DELAY, WORKERS, run_on_cluster

    d = 1000 if args.quick else 10000
    rounds = 40 if args.quick else 100
    candidates = settings(d, args.quick)
    load_before = load_average()
    rows: list[dict] = []
    with sampled_cluster(RATES[0]) as (cluster, sampler):
        for rate in RATES:
            cluster.shape(rate, DELAY)
            for run in run_on_cluster(cluster, d, candidates, rounds=rounds):
                start, stop = run["window"]
                rows.append({"rate": rate, "setting": run["label"],
                             "round_ms": 1e3 * (stop - start) / run["window_rounds"],
                             **link_kB(sampler, run)})
            print_table([r for r in rows if r["rate"] == rate],
                        f"d={d}, {rate}, K={WORKERS}, {rounds} timed rounds")
    payload = {"d": d, "rounds": rounds, "load_average": [load_before, load_average()],
               "rows": rows}
    write_json("routes", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
