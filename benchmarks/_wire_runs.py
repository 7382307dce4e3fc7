"""Fits for the bandwidth benchmarks, run by a driver on the (emulated) cluster's head.

``python -m benchmarks._wire_runs --d 1000 --configs '[...]'`` joins the running Ray
(``address="auto"``), fits the planted problem once per configuration with the workers
spread over the worker nodes, and prints one JSON line per fit. The orchestrating
benchmarks (``cluster_time_to_accuracy``, ``against_the_wire``) submit it with
``ray job submit`` and read those lines back.

For every fit it reports what explains its time: iterations to the target, wall time and
total bytes to the target, and per-round medians of the message sizes and of the compute,
encode/decode and communication times measured inside the fit.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

import numpy as np

from benchmarks._common import cluster_driver_parser

MARK = "WIRE_RESULT "


def run_config(problem: Any, config: dict[str, Any], *, workers: int, batch_per_worker: int,
               tol: float, max_iterations: int, address: str | None = None) -> dict[str, Any]:
    """Fit ``problem`` with one (codec, mode) configuration and summarize the run."""
    from ray_relu import fit

    # Wall clock (shared by every emulated host) after each round 1..T, so that the
    # caller can read the link counters over the same rounds (benchmarks._links).
    stamps: list[float] = []
    start = time.perf_counter()
    result = fit(problem, codec=config["codec"], codec_options=config.get("options") or {},
                 downlink_codec=config.get("downlink"), workers=workers,
                 mode=config["mode"], batch_size=batch_per_worker * workers, tol=tol,
                 iterations=max_iterations, seed=0, progress=False, placement="spread",
                 cpus_per_worker=1, address=address, route=config.get("route", "relay"),
                 on_round=lambda record, actors: stamps.append(time.time()))
    elapsed = time.perf_counter() - start
    h = {c: np.asarray(result.history.column(c), dtype=float)
         for c in ("bytes_up", "bytes_down", "bytes_peer", "compute_s", "encode_s",
                   "comm_s", "wall_s")}
    rounds = slice(2, None)  # skip the start round and the first update (warm-up)

    def median(name: str) -> float:
        values = h[name][rounds]
        return float(statistics.median(values)) if len(values) else float("nan")

    return {
        "label": config.get("label") or result.config["codec_label"],
        "codec": result.config["codec_label"], "mode": config["mode"],
        "d": int(problem.d), "n": int(problem.n), "workers": workers,
        "batch_per_worker": batch_per_worker, "converged": bool(result.converged),
        "iterations": int(result.iterations), "rel_error": float(result.rel_error),
        "wall_to_target_s": float(h["wall_s"].sum()), "fit_total_s": elapsed,
        "total_bytes": int(result.total_bytes()),
        "bytes_per_round": {k: median(k) for k in ("bytes_up", "bytes_down", "bytes_peer")},
        "round_s": median("wall_s"), "round_mean_s": float(np.mean(h["wall_s"][rounds])),
        "compute_s": median("compute_s"),
        "encode_s": median("encode_s"), "comm_s": median("comm_s"),
        "step_size": float(result.step_size),
        # rounds 3..T, as the medians above: wall-clock start, end and round count
        "window": [stamps[1], stamps[-1]] if len(stamps) > 2 else None,
        "window_rounds": max(0, len(stamps) - 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = cluster_driver_parser(__doc__)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-iterations", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=None,
                        help="time exactly this many rounds (tol 0) instead of fitting "
                        "to --tol")
    parser.add_argument("--configs", required=True, help="JSON list of {codec, options, "
                        "mode, downlink, label}")
    args = parser.parse_args(argv)
    from ray_relu import PlantedReLU
    from ray_relu.runtime import ensure_ray

    ensure_ray(args.address, log_to_driver=False)
    for config in json.loads(args.configs):
        # The rows' storage ("dtype" of a config, float64 by default) is part of the data.
        problem = PlantedReLU(args.d, args.n or 8 * args.d, seed=0,
                              dtype=config.get("dtype", "float64"))
        row = run_config(problem, config, workers=args.workers,
                         batch_per_worker=args.batch_per_worker,
                         tol=0.0 if args.rounds else args.tol,
                         max_iterations=args.rounds or args.max_iterations)
        print(MARK + json.dumps(row), flush=True)
    return 0


def parse_results(text: str) -> list[dict[str, Any]]:
    """The result rows printed by :func:`main`, from a job's logs."""
    return [json.loads(line.split(MARK, 1)[1]) for line in text.splitlines() if MARK in line]


if __name__ == "__main__":
    sys.exit(main())
