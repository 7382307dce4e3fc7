"""Ours against PyTorch DDP on the same emulated cluster, links and problem (issue 11).

The peer: Ray Train ``TorchTrainer`` with ``DistributedDataParallel`` (gloo) on
``nn.Linear(d, 1, bias=False)`` + ReLU, with plain allreduce, ``fp16_compress_hook`` and
the PowerSGD hook (``benchmarks/_torch_ddp.py`` says what PowerSGD does on a 1 x d
weight). Ours: QSGD at s in {sqrt(2d), 2 sqrt(d), 4 sqrt(d)} (141, 200, 400 at d = 1e4)
in all-to-all mode, and in master mode with a QSGD, a full-precision or no downlink
codec (exact: the master relays the messages when that is shorter than shipping ``w``,
and then submits rounds ahead); the best of each mode at each link is reported. Our
shards hold the rows in float32, as DDP's do (``PlantedReLU(..., dtype="float32")``:
the same draws rounded; our arithmetic stays float64).

Method, as ``cluster_time_to_accuracy``: time to rel_error 1e-6 = iterations to 1e-6 x
time per round on the cluster.

- Iterations: ours from the exact single-process reference (the fit's iterates are
  the reference's); DDP's from its float32 arithmetic in one process
  (``benchmarks/_ddp_count.py``), same shards, rows, start and step size (our fp32
  fit's default) as ours.
- Round time: on one emulated cluster (CPU-less head, K = 3 one-CPU worker hosts,
  64 rows per worker per round), at 10 mbit, 100 mbit and 1 gbit in turn: ours by
  ``benchmarks._wire_runs`` (the real fit), DDP by ``benchmarks._ddp_runs``
  (``TorchTrainer``, every hook, plus a bare gloo allreduce loop). Round time = wall
  time of the timed rounds / their number. A first pass times every setting over
  ``--rounds`` rounds; then the best of ours per mode and every DDP hook are timed
  again ``--repeats`` times over 3x as many rounds, our job and DDP's alternating, and
  their medians decide (:func:`confirm`): on 2 shared cores a single short window
  moves by 1.5x between runs.
- Bytes per round on each link, in and out: the hosts' veth counters over the same
  timed rounds (``benchmarks._links``), everything included (Ray's own traffic too).

Needs root (namespaces, sshd, tc) and the ``peers`` extra (torch, Ray Train): without
torch it prints how to install it and returns. ``--quick``: d = 1e3, fewer rounds and
settings, a few minutes. Cluster id: ``RAY_RELU_EMU_ID`` (default 7).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
from pathlib import Path

from benchmarks._common import print_table, write_json

INSTALL_HINT = ("benchmarks.peers needs the peers extra (CPU torch and Ray Train): "
                "make install-peers   # or: pip install -e '.[peers]'")
RATES = ("10mbit", "100mbit", "1gbit")
GOALS = {"10mbit": 2.0, "100mbit": 1.5, "1gbit": 1.0}   # ours best vs best DDP, speed
TOL = 1e-6
ROWS = "float32"            # how our shards store the rows: as DDP's do


def torch_missing() -> bool:
    """True when torch or Ray Train is not importable (the extra is not installed)."""
    return any(importlib.util.find_spec(m) is None for m in ("torch", "ray.train"))


def ours_settings(d: int, quick: bool) -> list[dict]:
    """Our candidates: QSGD levels x (all-to-all by each route; master with a QSGD or
    an fp32 downlink, or with none: exact, relaying the messages when that is shorter,
    which lets the fit submit rounds ahead)."""
    root = math.sqrt(d)
    levels = [round(math.sqrt(2) * root), round(2 * root)]
    levels += [] if quick else [round(4 * root)]
    out = []
    for s in levels:
        q = {"id": "qsgd", "levels": s}
        for route in ("p2p", "relay", "push"):
            out.append({"codec": "qsgd", "options": {"levels": s}, "mode": "all-to-all",
                        "downlink": None, "route": route, "dtype": ROWS,
                        "label": f"ours qsgd s={s} all-to-all {route}"})
        for down, name in ((q, "qsgd"), ("fp32", "fp32"), (None, "exact")):
            out.append({"codec": "qsgd", "options": {"levels": s}, "mode": "master",
                        "downlink": down, "dtype": ROWS,
                        "label": f"ours qsgd s={s} master down={name}"})
    return out


def per_round_bytes(links: dict, rounds: int) -> dict:
    """Head and worker links' bytes per round, in and out (workers: mean, min, max)."""
    head = links["rr-node0"]
    workers = [v for host, v in sorted(links.items()) if host != "rr-node0"]
    out = {"head_in": head["in"] / rounds, "head_out": head["out"] / rounds}
    for way in ("in", "out"):
        values = [w[way] / rounds for w in workers]
        out[f"worker_{way}"] = sum(values) / len(values)
        out[f"worker_{way}_range"] = [min(values), max(values)]
    return out


def _ours_rows(cluster, d: int, settings: list[dict], rounds: int) -> list[dict]:
    """Our fits of ``settings`` on the cluster, one job: one row per setting."""
    from benchmarks.cluster_time_to_accuracy import run_on_cluster

    return [{"setting": row["label"], "family": "ours", "mode": row["mode"],
             "window": row["window"], "window_rounds": row["window_rounds"]}
            for row in run_on_cluster(cluster, d, settings, rounds=rounds)]


def _ddp_rows(cluster, d: int, hooks: list[str], rounds: int,
              allreduce: bool = True) -> list[dict]:
    """DDP's rounds with every hook (and, with ``allreduce``, the bare gloo loops) on
    the cluster, one Ray Train job: one row per hook and loop."""
    from benchmarks import _ddp_runs
    from benchmarks.cluster_time_to_accuracy import REPO, WORKERS

    job = cluster.submit(["python", "-m", "benchmarks._ddp_runs", "--d", str(d),
                          "--workers", str(WORKERS), "--rounds", str(rounds),
                          "--hooks", ",".join(hooks),
                          *([] if allreduce else ["--allreduce-rounds", "0"])],
                         working_dir=REPO, env_vars={"GLOO_SOCKET_IFNAME": "eth0"},
                         timeout=3600)
    return [{"setting": row["setting"], "family": "ddp" if row["hook"] else "allreduce",
             "mode": row["hook"], "window": row["window"],
             "window_rounds": row["window_rounds"]}
            for row in job.results(_ddp_runs.MARK)]


def _round_s(row: dict) -> float:
    """Wall time per round over the row's timed window."""
    start, stop = row["window"]
    return (stop - start) / row["window_rounds"]


def measure_rate(cluster, sampler, d: int, settings: list[dict], hooks: list[str],
                 rounds: int) -> list[dict]:
    """One link rate: our fits and the DDP run on the cluster; rows with round time
    and per-round bytes of every setting."""
    rows = _ours_rows(cluster, d, settings, rounds) + _ddp_rows(cluster, d, hooks, rounds)
    for row in rows:
        row["round_s"] = _round_s(row)
        row["bytes"] = per_round_bytes(sampler.between(*row["window"]),
                                       row["window_rounds"])
    return rows


def finalists(rows: list[dict]) -> list[str]:
    """The best of ours in each mode, by time to the target (rows from
    :func:`with_targets`)."""
    out = []
    for mode in ("master", "all-to-all"):
        ours = [r for r in rows if r["family"] == "ours" and r["mode"] == mode
                and r["converged"]]
        if ours:
            out.append(min(ours, key=lambda r: r["time_s"])["setting"])
    return out


def confirm(cluster, d: int, rows: list[dict], settings: list[dict], hooks: list[str],
            rounds: int, repeats: int) -> None:
    """Time the :func:`finalists` and every DDP hook again, ``repeats`` times over
    ``rounds`` rounds, our job and DDP's alternating (and which goes first alternating
    too), so that load drifting during the run weighs on both sides alike. Each row
    measured again gets the median of these runs as ``round_s`` (the first pass's value
    is kept as ``first_pass_round_s``): the first pass picked the finalists for being
    fast, so its own times would favour them."""
    chosen = set(finalists(rows))
    picked = [s for s in settings if s["label"] in chosen]
    runs: dict[str, list[float]] = {}
    for repeat in range(repeats):
        blocks = [lambda: _ours_rows(cluster, d, picked, rounds),
                  lambda: _ddp_rows(cluster, d, hooks, rounds, allreduce=False)]
        for block in blocks[::1 if repeat % 2 == 0 else -1]:
            for row in block():
                runs.setdefault(row["setting"], []).append(_round_s(row))
    for row in rows:
        if row["setting"] in runs:
            row["first_pass_round_s"] = row["round_s"]
            row["round_s_runs"] = runs[row["setting"]]
            row["round_s"] = statistics.median(runs[row["setting"]])


def with_targets(rows: list[dict], iterations: dict[str, dict]) -> list[dict]:
    """Add iterations and time to the target, and the speed-up of ours over the best
    DDP setting at the same rate."""
    for row in rows:
        it = iterations.get(row["setting"])
        row["iterations"] = it["iterations"] if it else None
        row["converged"] = bool(it and it["converged"])
        row["time_s"] = row["iterations"] * row["round_s"] if it else None
    ddp = [r for r in rows if r["family"] == "ddp" and r["converged"]]
    best = min(ddp, key=lambda r: r["time_s"]) if ddp else None
    for row in rows:
        if best is not None and row["time_s"]:
            row["best_ddp"] = best["setting"]
            row["speedup_vs_best_ddp"] = best["time_s"] / row["time_s"]
    return rows


def _contenders(rows: list[dict], mode: str | None = None) -> list[dict]:
    """Our converged rows (of ``mode``, or both): only those :func:`confirm` timed
    again, if it ran (a first-pass time is a single, less trustworthy one)."""
    ours = [r for r in rows if r["family"] == "ours" and r["converged"]
            and mode in (None, r["mode"])]
    confirmed = [r for r in ours if "round_s_runs" in r]
    return confirmed or ours


def table(rate: str, rows: list[dict]) -> list[dict]:
    """The printed rows: DDP settings, the bare allreduce, and ours best per mode."""
    shown = [r for r in rows if r["family"] != "ours"]
    for mode in ("master", "all-to-all"):
        ours = _contenders(rows, mode)
        if ours:
            shown.append({**min(ours, key=lambda r: r["time_s"]), "best_of": mode})
    out = []
    for r in shown:
        b = r["bytes"]
        runs = r.get("round_s_runs", [r["round_s"]])
        out.append({"rate": rate, "setting": r["setting"], "round_ms": 1e3 * r["round_s"],
                    "runs_ms": "/".join(f"{1e3 * x:.1f}" for x in runs),
                    "iters": r["iterations"] if r["iterations"] is not None else "-",
                    "time_s": r["time_s"] if r["time_s"] is not None else "-",
                    "head_in_kB": b["head_in"] / 1e3, "head_out_kB": b["head_out"] / 1e3,
                    "wkr_in_kB": b["worker_in"] / 1e3, "wkr_out_kB": b["worker_out"] / 1e3,
                    "x_best_ddp": r.get("speedup_vs_best_ddp", "-")})
    return out


def goals(rows_by_rate: dict[str, list[dict]]) -> list[dict]:
    """Ours best (either mode) against the best DDP setting, per rate."""
    out = []
    for rate, rows in rows_by_rate.items():
        ours = [r for r in _contenders(rows) if "speedup_vs_best_ddp" in r]
        if not ours:
            continue
        best = max(ours, key=lambda r: r["speedup_vs_best_ddp"])
        out.append({"rate": rate, "ours_best": best["setting"], "best_ddp": best["best_ddp"],
                    "speedup": best["speedup_vs_best_ddp"], "goal": GOALS[rate],
                    "met": best["speedup_vs_best_ddp"] >= GOALS[rate]})
    return out


def parse_rates(text: str) -> list[str]:
    """The link rates to run, in the order given; each one of :data:`RATES`, once."""
    rates = [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in rates if r not in RATES]
    if not rates or unknown or len(set(rates)) != len(rates):
        raise ValueError(f"--rates {text!r}: expected distinct rates from "
                         f"{', '.join(RATES)}, comma-separated")
    return rates


def trajectory(setting: dict) -> str:
    """What fixes a setting's iterates: everything but its label and route (the engine
    tests hold every route to the same reference, so routes share one count)."""
    return json.dumps({k: v for k, v in setting.items() if k not in ("label", "route")},
                      sort_keys=True)


def by_trajectory(settings: list[dict], iterations: dict[str, dict]) -> dict[str, dict]:
    """The counts of ``iterations`` keyed by :func:`trajectory` (saved in the JSON, so
    a later run with a new route of a counted setting can reuse its count)."""
    return {trajectory(s): iterations[s["label"]] for s in settings}


def load_iterations(path: Path, d: int, settings: list[dict],
                    hooks: list[str]) -> dict[str, dict]:
    """The iteration counts of an earlier run's JSON, checked against this run's d and
    settings, so that a rerun of some rates need not count again (about 12 minutes at
    d = 1e4). A setting is found by its label or, failing that, by its trajectory."""
    payload = json.loads(Path(path).read_text())
    if payload.get("d") != d:
        raise ValueError(f"{path}: counted at d = {payload.get('d')}, this run has d = {d}")
    rows = payload.get("ours_rows", "float64")       # runs before it was recorded
    if rows != ROWS:
        raise ValueError(f"{path}: our counts are for {rows} rows, this run fits {ROWS} "
                         f"rows (a different data set): count again")
    counts = payload.get("iterations", {})
    trajectories = payload.get("trajectories", {})
    found = [(s["label"], counts.get(s["label"]) or trajectories.get(trajectory(s)))
             for s in settings]
    found += [(f"DDP {hook}", counts.get(f"DDP {hook}")) for hook in hooks]
    missing = [label for label, count in found if count is None]
    if missing:
        raise ValueError(f"{path}: no iteration count for {', '.join(missing)}")
    return dict(found)


def count_all(d: int, settings: list[dict], hooks: list[str]) -> dict[str, dict]:
    """Iterations to the target of every setting, ours and DDP's."""
    from benchmarks._ddp_count import count_iterations
    from benchmarks.cluster_time_to_accuracy import iterations_to_target, reference_problem

    out = {}
    counted: dict[str, dict] = {}
    problem = reference_problem(d, ROWS)
    for setting in settings:
        key = trajectory(setting)           # each trajectory is counted once
        if key not in counted:
            iterations, reached = iterations_to_target(d, setting, tol=TOL, problem=problem)
            counted[key] = {"iterations": iterations, "converged": reached}
        out[setting["label"]] = dict(counted[key])
        print(f"{setting['label']}: {out[setting['label']]['iterations']} iterations",
              flush=True)
    del problem                       # free its rows before DDP's float32 copies
    for hook, row in count_iterations(d, 8 * d, hooks, tol=TOL).items():
        out[f"DDP {hook}"] = row
        print(f"DDP {hook}: {row['iterations']} iterations (rel_error "
              f"{row['rel_error']:.3g})", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d = 1e3, fewer settings")
    parser.add_argument("--out", type=Path, default=None, help="directory for the JSON")
    parser.add_argument("--d", type=int, default=None, help="override d")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per setting")
    parser.add_argument("--repeats", type=int, default=None,
                        help="after the first pass, time the best of ours per mode and "
                             "every DDP hook again this many times, alternating, over "
                             "3x the rounds; their medians decide (default 3, quick 2; "
                             "0: first pass only)")
    parser.add_argument("--rates", default=",".join(RATES),
                        help=f"comma-separated subset of {', '.join(RATES)}")
    parser.add_argument("--iterations-from", type=Path, default=None, metavar="JSON",
                        help="reuse the iteration counts of an earlier run's JSON (same d, "
                             "same machine: DDP's float32 counts depend on the CPU)")
    args = parser.parse_args(argv)
    try:
        rates = parse_rates(args.rates)
    except ValueError as error:
        parser.error(str(error))
    if args.repeats is not None and args.repeats < 0:
        parser.error(f"--repeats {args.repeats}: expected 0 or more")
    if torch_missing():
        print(INSTALL_HINT)
        return {}
    from benchmarks._fit_timing import load_average
    from benchmarks._links import LinkSampler
    from benchmarks._torch_ddp import HOOKS
    from benchmarks.cluster_time_to_accuracy import (BATCH_PER_WORKER, BENCH_CLUSTER_ID,
                                                     DELAY, WORKERS)
    from ray_relu.emulated import EmulatedCluster

    d = args.d or (1000 if args.quick else 10000)
    rounds = args.rounds or (40 if args.quick else 100)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 3)
    settings = ours_settings(d, args.quick)
    hooks = list(HOOKS)
    iterations = (load_iterations(args.iterations_from, d, settings, hooks)
                  if args.iterations_from
                  else count_all(d, settings, hooks))
    load_before = load_average()
    cluster_id = int(os.environ.get("RAY_RELU_EMU_ID", BENCH_CLUSTER_ID))
    by_rate: dict[str, list[dict]] = {}
    printed: list[dict] = []
    with EmulatedCluster(nodes=WORKERS + 1, rate=rates[0], delay=DELAY, cpus_per_node=1,
                         head_cpus=0, cluster_id=cluster_id) as cluster:
        shaping = ""
        with LinkSampler(cluster) as sampler:
            for rate in rates:
                shaping = cluster.shape(rate, DELAY)["shaping"]
                rows = with_targets(measure_rate(cluster, sampler, d, settings, hooks,
                                                 rounds), iterations)
                if repeats:
                    confirm(cluster, d, rows, settings, hooks, 3 * rounds, repeats)
                    rows = with_targets(rows, iterations)
                by_rate[rate] = rows
                shown = table(rate, rows)
                printed += shown
                print_table(shown, f"d={d}, {rate} ({shaping}), K={WORKERS}, "
                            f"{BATCH_PER_WORKER} rows/worker/round, {rounds} timed rounds "
                            f"(finalists: median of {repeats} x {3 * rounds}); "
                            "bytes per round")
    summary = goals(by_rate)
    print_table(summary, "ours best against the best DDP setting (time to 1e-6)")
    payload = {"quick": args.quick, "d": d, "n": 8 * d, "workers": WORKERS,
               "batch_per_worker": BATCH_PER_WORKER, "rounds": rounds, "tol": TOL,
               "ours_rows": ROWS,
               "repeats": repeats, "confirm_rounds": 3 * rounds,
               "shaping": shaping, "load_average_before": load_before,
               "load_average_after": load_average(), "iterations": iterations,
               "trajectories": by_trajectory(settings, iterations), "table": printed,
               "goals": summary, "rows": by_rate}
    write_json("peers", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
