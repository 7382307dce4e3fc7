"""Scaling: weak scaling in the number of workers K, and the cost of one iteration as d grows.

1. **Weak scaling.** Every worker holds a shard of the same size (d = 1000; 2000 rows
   in the quick profile, 4000 in the full one; full batch), K = 1..4 local workers,
   both modes, fp32. Ideal weak scaling
   keeps the time per iteration constant; efficiency(K) = T(1) / T(K). The machine
   these numbers come from has 2 cores: beyond K = 2 the workers time-share the cores
   (with the driver and Ray's own processes), so even perfect software would show an
   efficiency of at most about 2/K there, and K = 2 already competes with the driver.
2. **Cost versus d.** K = 2 workers with 16 rows each, d = 1e3 .. 1e6 (the
   quick profile stops at 1e5), per codec (fp32, fp16, QSGD s = 4 and s = 16) and
   mode; each iteration is split with the fit history's own columns: ``compute_s``
   (slowest worker's loss + gradient), ``encode_s`` (slowest worker's encode + decode,
   plus the master's decode/step/encode), ``comm_s`` (the rest of the round: Ray
   scheduling, transfers, waiting). With 16 rows per worker and d up to 1e6 the
   problem is far from identifiable, and the default step from the moment start can
   carry ``w`` (and the gradients) beyond fp16's range; the cost of an iteration does
   not depend on the trajectory, so this sweep starts at ``w = 0`` with a tiny step
   (``D_STEP``): every codec sees gradients of the same representative size.

Times are steady-state: the driver clock read between rounds, setup and warm-up rounds
excluded (``benchmarks/_fit_timing.py``). ``ms_per_iter`` is the median round (robust
to the bursts of a shared machine) and the split columns are medians over the same
rounds, so they add up to about ``ms_per_iter``. Configurations are interleaved
(repeat-major loops) and each figure is the median over repeats.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks._common import parse_args, print_table, write_json
from benchmarks._fit_timing import SPLIT, load_average, start_ray, time_fit

MODES = ("master", "all-to-all")
D_STEP = 1e-6     # keeps w near 0 in the d sweep (see the module docstring)
CODECS: dict[str, tuple[str, dict]] = {
    "fp32": ("fp32", {}), "fp16": ("fp16", {}),
    "qsgd s=4": ("qsgd", {"levels": 4}), "qsgd s=16": ("qsgd", {"levels": 16}),
}


def _median_runs(runs: list[dict]) -> dict:
    """Per-key median over repeats of :func:`time_fit` outputs."""
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def _ms(timing: dict) -> dict[str, float]:
    out = {"ms_per_iter": 1e3 * timing["per_iteration_median_s"]}
    out.update({f"{c[:-2]}_ms": 1e3 * timing[c] for c in SPLIT if c != "wall_s"})
    return out


def weak_scaling(*, d: int, rows: int, workers: list[int], iterations: int,
                 warmup: int, repeats: int) -> list[dict[str, Any]]:
    """Time per iteration with ``rows`` rows per worker for each K and mode."""
    from ray_relu import PlantedReLU

    runs: dict[tuple[str, int], list[dict]] = {(m, K): [] for m in MODES for K in workers}
    for _ in range(repeats):
        for K in workers:
            problem = PlantedReLU(d=d, n=K * rows, seed=0)
            for mode in MODES:
                runs[mode, K].append(time_fit(problem, codec="fp32", workers=K, mode=mode,
                                              iterations=iterations, warmup=warmup))
    table = []
    for mode in MODES:
        base = _median_runs(runs[mode, workers[0]])["per_iteration_median_s"]
        for K in workers:
            t = _median_runs(runs[mode, K])
            table.append({"mode": mode, "K": K, "rows/worker": rows, "d": d, **_ms(t),
                          "efficiency": base / t["per_iteration_median_s"]})
    return table


def cost_versus_d(*, dims: list[int], rows: int, workers: int, iterations: int,
                  warmup: int, repeats: int) -> list[dict[str, Any]]:
    """Time per iteration and its split for every d, codec and mode."""
    from ray_relu import PlantedReLU

    table = []
    for d in dims:
        problem = PlantedReLU(d=d, n=workers * rows, seed=0)
        runs: dict[tuple[str, str], list[dict]] = {}
        for _ in range(repeats):
            for mode in MODES:
                for label, (codec, options) in CODECS.items():
                    runs.setdefault((mode, label), []).append(time_fit(
                        problem, codec=codec, codec_options=options, workers=workers,
                        mode=mode, init="zero", step_size=D_STEP,
                        iterations=iterations, warmup=warmup))
        for (mode, label), values in runs.items():
            t = _median_runs(values)
            table.append({"mode": mode, "codec": label, "d": d, **_ms(t),
                          "ns_per_coord": 1e9 * t["per_iteration_median_s"] / d,
                          "bytes/iter": t["bytes_per_iteration"]})
    table.sort(key=lambda r: (r["mode"] != "master", r["codec"], r["d"]))
    return table


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)
    if args.quick:
        weak = dict(d=1000, rows=2000, workers=[1, 2, 3, 4], iterations=30, warmup=6,
                    repeats=2)
        dims = dict(dims=[1000, 10_000, 100_000], rows=16, workers=2, iterations=30,
                    warmup=5, repeats=2)
    else:
        weak = dict(d=1000, rows=4000, workers=[1, 2, 3, 4], iterations=150, warmup=20,
                    repeats=5)
        dims = dict(dims=[1000, 10_000, 100_000, 1_000_000], rows=16, workers=2,
                    iterations=60, warmup=10, repeats=3)
    load_before = load_average()
    start_ray()
    try:
        weak_rows = weak_scaling(**weak)
        print_table(weak_rows, f"weak scaling: {weak['rows']} rows/worker, d={weak['d']}, "
                               "fp32, full batch (ideal: constant time, efficiency 1)")
        d_rows = cost_versus_d(**dims)
        print_table(d_rows, f"cost of one iteration versus d: K={dims['workers']}, "
                            f"{dims['rows']} rows/worker, full batch")
    finally:
        import ray
        ray.shutdown()
    payload = {"load_average": {"before": load_before, "after": load_average()},
               "weak_scaling": {"params": weak, "rows": weak_rows},
               "cost_versus_d": {"params": dims, "rows": d_rows}}
    write_json("scaling", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
