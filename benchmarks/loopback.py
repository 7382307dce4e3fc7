"""Ours against gloo and DDP on one machine, over loopback, where bytes cost nothing.

Issue 11's loopback goal: a QSGD round of ``fit`` (K = 2, d = 1e4, 64 rows per worker)
no slower than a bare gloo fp32 allreduce of the gradient. On loopback the wire is
free, so this measures what each side pays per round besides bytes: our Ray round
(task submission, object transfer, the driver's bookkeeping) plus compute and codec,
against gloo's TCP allreduce alone and against a whole DDP training step.

Candidates, interleaved in blocks (``REPEATS`` times, medians reported):

- **ours**: ``ray_relu.fit`` on a local Ray (``num_cpus=2``), PlantedReLU(d, n = 8d),
  K = 2, 64 rows per worker per round, QSGD at s = 2 sqrt(d) in master mode (exact
  downlink) and in all-to-all mode (relay), and fp32 in both; the steady-state round
  time from ``benchmarks._fit_timing`` (setup excluded).
- **gloo**: two processes in one gloo process group on 127.0.0.1; the bare allreduce
  of d float32 (and float16) numbers per round, and DDP's training step on
  ``nn.Linear(d, 1, bias=False)`` + ReLU with the same shards and rows (plain
  allreduce and ``fp16_compress_hook``), from ``benchmarks/_torch_ddp.py``.

The two sides run one after the other, never together: each has both cores.
Needs torch (``make install-peers``); without it the benchmark prints that hint.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
from typing import Any

from benchmarks._common import parse_args, print_table, write_json
from benchmarks.peers import INSTALL_HINT, torch_missing

K = 2
BATCH = 64
REPEATS = 3
GOAL = 1.0                       # ours QSGD round / bare gloo fp32 allreduce round


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_rank(rank: int, port: int, d: int, rounds: int, queue: Any) -> None:
    """One rank of the loopback gloo group: DDP steps and bare allreduce loops."""
    import torch.distributed as dist

    from benchmarks._torch_ddp import run_worker

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=K)
    rows = run_worker(d, 8 * d, hooks=["fp32", "fp16"], batch=BATCH, rounds=rounds,
                      tol=0.0, allreduce_rounds=10 * rounds)
    dist.destroy_process_group()
    if rank == 0:
        queue.put(rows)


def gloo_block(d: int, rounds: int) -> dict[str, float]:
    """Round seconds of the gloo candidates, from one two-process run."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_gloo_rank, args=(r, port, d, rounds, queue))
             for r in range(K)]
    for p in procs:
        p.start()
    rows = queue.get(timeout=600)
    for p in procs:
        p.join(timeout=60)
    return {row["setting"]: row["round_s"] for row in rows}


def ours_settings(d: int) -> dict[str, dict]:
    """Our candidates: fit keyword arguments by label."""
    s = round(2 * math.sqrt(d))
    out = {}
    for mode in ("master", "all-to-all"):
        out[f"ours fp32 {mode}"] = {"codec": "fp32", "mode": mode}
        out[f"ours qsgd s={s} {mode}"] = {"codec": "qsgd", "codec_options": {"levels": s},
                                          "mode": mode}
    return out


def ours_block(problem: Any, settings: dict[str, dict], rounds: int) -> dict[str, dict]:
    """Per setting (one fit each): the steady-state round seconds and the history's
    median split of a round (compute, encode, comm, wall; ``benchmarks._fit_timing``)."""
    from benchmarks._fit_timing import SPLIT, time_fit

    out = {}
    for label, options in settings.items():
        timing = time_fit(problem, iterations=rounds, warmup=max(5, rounds // 10),
                          workers=K, batch_size=K * BATCH, **options)
        out[label] = {"round_s": timing["per_iteration_s"],
                      **{column: timing[column] for column in SPLIT}}
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)
    if torch_missing():
        print(INSTALL_HINT)
        return {}
    from benchmarks._fit_timing import load_average, start_ray
    from ray_relu import PlantedReLU

    d = 1000 if args.quick else 10_000
    rounds = 100 if args.quick else 300
    load = [load_average()]
    settings = ours_settings(d)
    problem = PlantedReLU(d, 8 * d, seed=0)
    samples: dict[str, list[float]] = {}
    splits: dict[str, list[dict]] = {}
    for _ in range(REPEATS):
        start_ray(num_cpus=2)
        for label, timing in ours_block(problem, settings, rounds).items():
            samples.setdefault(label, []).append(timing["round_s"])
            splits.setdefault(label, []).append(timing)
        import ray
        ray.shutdown()                      # its idle processes would share the cores
        for label, sec in gloo_block(d, rounds).items():
            samples.setdefault(label, []).append(sec)
    load.append(load_average())
    median = {label: statistics.median(v) for label, v in samples.items()}
    floor = median["gloo allreduce float32"]
    rows = [{"setting": label, "round_ms": 1e3 * sec, "x_gloo_fp32": sec / floor,
             "runs_ms": " / ".join(f"{1e3 * v:.2f}" for v in samples[label])}
            for label, sec in median.items()]
    print_table(rows, f"d = {d:,}, K = {K}, {BATCH} rows per worker, loopback; round time, "
                      f"median of {REPEATS} blocks of {rounds} rounds")
    print_table([{"setting": label, **{f"{c[:-2]}_ms": 1e3 * statistics.median(
        t[c] for t in timings) for c in ("compute_s", "encode_s", "comm_s", "wall_s")}}
        for label, timings in splits.items()],
        "ours: where a round goes (medians; compute and encode are the slowest worker's, "
        "comm the rest of the round as the driver saw it)")
    ours_qsgd = {k: v for k, v in median.items() if k.startswith("ours qsgd")}
    best = min(ours_qsgd, key=ours_qsgd.get)
    ratio = ours_qsgd[best] / floor
    print(f"load average (1, 5, 15 min) at start and end: {load[0]}, {load[1]}")
    print(f"goal: ours QSGD round <= {GOAL}x the bare gloo fp32 allreduce round: "
          f"{'met' if ratio <= GOAL else 'NOT met'} ({best}: {ratio:.2f}x; against "
          f"DDP's fp32 step: {ours_qsgd[best] / median['DDP fp32']:.2f}x)")
    result = {"d": d, "workers": K, "batch_per_worker": BATCH, "rounds": rounds,
              "repeats": REPEATS, "quick": args.quick, "load_average": load,
              "samples_s": samples, "rows": rows, "ours_split": splits,
              "goal": {"max_ratio": GOAL, "best": best, "ratio": ratio}}
    write_json("loopback", result, args.out)
    return result


if __name__ == "__main__":
    main()
