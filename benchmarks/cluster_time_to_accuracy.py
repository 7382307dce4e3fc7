"""Time and bytes to rel_error 1e-6 on a bandwidth-limited cluster (issue 8, item 4).

An emulated cluster (``ray_relu.emulated.EmulatedCluster``: network namespaces, the real
``ray up``) with a head that runs the driver and no workers, and 3 worker nodes; every
link shaped to 100 mbit, then 10 mbit. Mini-batches of 64 rows per worker. fp32, fp16 and
QSGD at several levels s, in master and all-to-all mode. Master
mode sends the downlink with the same codec as the uplink (the master encodes its
update, ``fit(downlink_codec=)``), so fp32 means fp32 both ways.

Method. A fit is deterministic: the same seed gives the same iterates at any link
rate, and the distributed fit equals the single-process reference
(``ray_relu.reference.sgd``) draw for draw (``tests/test_engine.py``). So

- **iterations to 1e-6** come from the reference, run on this machine;
- **time per round** and **bytes per round** are measured on the emulated cluster by a
  driver on the head (``benchmarks._wire_runs``, submitted with ``ray job submit``)
  that runs ``ROUNDS`` rounds of the real distributed fit at each link rate;
- time to target = iterations x mean round time (actor start and shard generation
  excluded); bytes to target = iterations x mean bytes per round.

Fitting every setting to 1e-6 at 10 mbit would take hours here (fp32 all-to-all at
d = 1e4 moves 360 kB through the head per round, 0.3 s at 10 mbit, for ~5500 rounds);
``--to-target`` does run the fits to the target on the cluster instead, for checking
the method.

Goals at d = 1e4: the best QSGD setting needs >= 5x fewer total bytes than fp32 and is
>= 2x faster at 100 mbit and >= 4x faster at 10 mbit. ``against_the_wire`` compares each
round with its physical floor.

Needs root (namespaces, sshd, tc; ``bash cluster/install-deps.sh``). ``--quick``:
d = 1e3 only, no fp16, two QSGD settings. The full profile (d = 1e3 and 1e4; d = 1e4
with n = 8d is 6.4 GB of float64 rows, about the largest this 24 GiB machine holds next to
four Ray nodes and the reference) takes about half an hour.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks._common import print_table, write_json
from benchmarks._wire_model import effective_delay, round_floor_s
from benchmarks._wire_runs import parse_results

REPO = Path(__file__).resolve().parent.parent
WORKERS = 3
BATCH_PER_WORKER = 64
DELAY = "1ms"
SHORT = {"levels": "s", "bucket_size": "bucket"}
BENCH_CLUSTER_ID = 7    # apart from the test suite's emulated cluster (id 0)


def configs(d: int, quick: bool) -> list[dict[str, Any]]:
    """The (codec, options, mode) settings measured at dimension ``d``."""
    root = int(round(math.sqrt(d)))
    if quick:
        qsgd = [{"levels": root}, {"levels": 4 * root}]
    else:
        qsgd = [{"levels": root}, {"levels": 2 * root}, {"levels": 4 * root}]
    out = []
    for mode in ("master", "all-to-all"):
        plain = [("fp32", {})] if quick else [("fp32", {}), ("fp16", {})]
        for codec, options in plain + [("qsgd", o) for o in qsgd]:
            label = codec + "".join(f" {SHORT[k]}={v}" for k, v in options.items())
            out.append({"codec": codec, "options": options, "mode": mode,
                        "downlink": (codec if codec != "qsgd" else
                                     {"id": "qsgd", **options}) if mode == "master" else None,
                        "label": f"{label} {mode}"})
    return out


def run_on_cluster(cluster: Any, d: int, settings: list[dict], *, tol: float = 1e-6,
                   rounds: int | None = None, timeout: float = 7200) -> list[dict]:
    """Submit the fits of ``settings`` as one job (to ``tol``, or exactly ``rounds``
    rounds); return its result rows."""
    extra = ["--rounds", str(rounds)] if rounds else []
    job = cluster.submit(["python", "-m", "benchmarks._wire_runs", "--d", str(d),
                          "--workers", str(WORKERS), "--batch-per-worker",
                          str(BATCH_PER_WORKER), "--tol", str(tol), *extra,
                          "--configs", json.dumps(settings)],
                         working_dir=REPO, timeout=timeout)
    return parse_results(job.logs)


def reference_problem(d: int, dtype: str = "float64"):
    """``PlantedReLU(d, 8d, seed=0, dtype=dtype)`` whose shards are made once and kept,
    so that the reference runs of several settings share them (6.4 GB of float64 rows
    at d = 1e4)."""
    import functools

    from ray_relu import PlantedReLU

    problem = PlantedReLU(d, 8 * d, seed=0, dtype=dtype)
    problem.shard = functools.lru_cache(maxsize=None)(problem.shard)
    return problem


def iterations_to_target(d: int, setting: dict, *, tol: float = 1e-6,
                         max_iterations: int = 20000, problem=None) -> tuple[int, bool]:
    """Iterations the fit of ``setting`` needs to reach ``tol`` (single-process reference;
    ``problem``: a :func:`reference_problem` to reuse)."""
    from ray_relu import PlantedReLU
    from ray_relu.reference import sgd

    if problem is None:
        problem = PlantedReLU(d, 8 * d, seed=0, dtype=setting.get("dtype", "float64"))
    run = sgd(problem, codec=setting["codec"],
              codec_options=setting.get("options") or {}, downlink_codec=setting.get("downlink"),
              workers=WORKERS, mode=setting["mode"], batch_size=WORKERS * BATCH_PER_WORKER,
              iterations=max_iterations, tol=tol, seed=0)
    final = run.history.column("rel_error")[-1].as_py()
    return run.history.num_rows - 1, final <= tol


def with_target(rows: list[dict], targets: dict[tuple[int, str], tuple[int, bool]]
                ) -> list[dict]:
    """Turn timing runs into time and bytes to the target (see the module doc);
    ``targets`` maps (d, label) to (iterations, reached)."""
    out = []
    for row in rows:
        iterations, reached = targets[row["d"], row["label"]]
        per_round = sum(row["bytes_per_round"].values())
        out.append({**row, "iterations": iterations, "converged": reached,
                    "wall_to_target_s": iterations * row["round_mean_s"],
                    "total_bytes": int(iterations * per_round)})
    return out


def summarize(rows: list[dict], rate: str, delay: str) -> list[dict]:
    """Add the ratios against fp32 (same d, mode, rate) and the floor of each round."""
    out = []
    for row in rows:
        base = next(r for r in rows if r["mode"] == row["mode"] and r["d"] == row["d"]
                    and r["label"].startswith("fp32"))
        floor = round_floor_s(row, rate, delay)
        out.append({
            "rate": rate, "d": row["d"], "setting": row["label"],
            "conv": row["converged"], "iters": row["iterations"],
            "wall_s": row["wall_to_target_s"], "MB": row["total_bytes"] / 1e6,
            "bytes_x_fp32": base["total_bytes"] / max(1, row["total_bytes"]),
            "speed_x_fp32": base["wall_to_target_s"] / row["wall_to_target_s"],
            "round_ms": 1e3 * row["round_mean_s"], "wire_ms": 1e3 * floor["wire_s"],
            "compute_ms": 1e3 * row["compute_s"], "codec_ms": 1e3 * row["encode_s"],
            "pipe": floor["busiest_pipe"], "KB_busiest": floor["busiest_bytes"] / 1e3,
        })
    return out


def best_qsgd(rows: list[dict]) -> dict | None:
    """The converged QSGD row with the shortest wall time (ties: fewer bytes)."""
    q = [r for r in rows if r["setting"].startswith("qsgd") and r["conv"]]
    return min(q, key=lambda r: (r["wall_s"], r["MB"])) if q else None


def main(argv: list[str] | None = None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = 1e3 only, fewer settings")
    parser.add_argument("--out", type=Path, default=None, help="directory for the JSON")
    parser.add_argument("--to-target", action="store_true",
                        help="fit every setting to 1e-6 on the cluster (slow)")
    args = parser.parse_args(argv)
    from ray_relu.emulated import EmulatedCluster

    dims = [1000] if args.quick else [1000, 10000]
    rates = ["100mbit", "10mbit"]
    rounds = 100
    targets = {}
    if not args.to_target:
        for d in dims:
            for setting in configs(d, args.quick):
                targets[d, setting["label"]] = iterations_to_target(d, setting)
    table: list[dict] = []
    raw: list[dict] = []
    with EmulatedCluster(nodes=WORKERS + 1, rate=rates[0], delay=DELAY, cpus_per_node=1,
                         head_cpus=0, cluster_id=BENCH_CLUSTER_ID) as cluster:
        shaping = cluster.info["shaping"]
        delay = effective_delay(shaping, DELAY)
        print(f"links: {shaping}")
        for rate in rates:
            cluster.shape(rate, DELAY)
            for d in dims:
                settings = configs(d, args.quick)
                if args.to_target:
                    rows = run_on_cluster(cluster, d, settings)
                else:
                    rows = with_target(run_on_cluster(cluster, d, settings, rounds=rounds),
                                       targets)
                raw += [{**r, "rate": rate} for r in rows]
                summary = summarize(rows, rate, delay)
                table += summary
                print_table(summary, f"d={d}, {rate}, delay {delay}, K={WORKERS}, "
                            f"{BATCH_PER_WORKER} rows/worker/round")
    goals = []
    for rate, speed_goal in (("100mbit", 2.0), ("10mbit", 4.0)):
        for d in dims:
            for mode in ("master", "all-to-all"):
                rows = [r for r in table if r["rate"] == rate and r["d"] == d
                        and r["setting"].endswith(mode)]
                best = best_qsgd(rows)
                if best is None:
                    continue
                goals.append({"rate": rate, "d": d, "mode": mode, "best": best["setting"],
                              "bytes_x_fp32": best["bytes_x_fp32"], "bytes_goal": 5.0,
                              "speed_x_fp32": best["speed_x_fp32"], "speed_goal": speed_goal})
    print_table(goals, "best QSGD against fp32 (goals apply at d = 1e4)")
    payload = {"quick": args.quick, "delay": delay, "shaping": shaping, "workers": WORKERS,
               "batch_per_worker": BATCH_PER_WORKER, "method": "to-target" if
               args.to_target else f"reference iterations x mean of {rounds} timed rounds",
               "rows": table, "goals": goals, "raw": raw}
    write_json("cluster_time_to_accuracy", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
