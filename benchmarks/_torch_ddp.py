"""The peer: PyTorch DDP (gloo) training ``nn.Linear(d, 1, bias=False)`` + ReLU.

One worker's side of the peer benchmark, used twice: by :mod:`benchmarks._ddp_count`
(three processes on loopback, to count iterations to the target) and by
:mod:`benchmarks._ddp_runs` (a Ray Train ``TorchTrainer`` on the emulated cluster, to
time rounds). Both call :func:`run_worker` in an initialized gloo process group.

The problem is ours, draw for draw: worker ``k`` holds shard ``k`` of
``PlantedReLU(d, n, seed=0)`` (made on the worker from the seed, stored as float32 as
DDP would train it), starts from our moment initialization, takes the same 64 rows per
round as our fit (``ray_relu.algorithm.batch_indices``) and steps with our fp32 fit's
default step size. The loss is ours (``0.5 * mean((relu(<w, x>) - y)^2)``); DDP averages
the workers' gradients, as our fit does. Only the arithmetic (float32) and the
communication hook differ.

Hooks (``HOOKS``):

- ``fp32``: DDP's default, one gloo allreduce of the 4d-byte gradient;
- ``fp16``: ``fp16_compress_hook``, the allreduce in float16 (2d bytes);
- ``powersgd``: ``powerSGD_hook`` with rank 1 and the library's default
  ``min_compression_rate = 2``. A 1 x d gradient compresses to ``(1 + d) * r`` numbers,
  more than its ``d``, so the hook never compresses it: it allreduces it uncompressed
  (plus the error-feedback copy and two empty P/Q allreduces);
- ``powersgd-forced``: the same with ``min_compression_rate = 0``, so rank 1 is used:
  P = M Q is 1 x 1 and Q = M^T P is d x 1, two allreduces in sequence of 1 and d floats,
  and P Q^T reproduces the mean gradient exactly (a 1 x d matrix has rank 1): more
  bytes than plain fp32 and no compression at all.

``start_powerSGD_iter`` is 2 (the least DDP allows with error feedback) instead of the
library's 1000, so the timed rounds show the hook's steady state.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import numpy as np

HOOKS = ("fp32", "fp16", "powersgd", "powersgd-forced")
SEED = 0
_CHUNK_ROWS = 2048          # rows made at a time in float64 before the float32 copy


def fp32_step_size(d: int, n: int, workers: int, batch_per_worker: int) -> float:
    """The default step size of our fp32 fit on the same problem and batch."""
    from ray_relu import PlantedReLU
    from ray_relu.settings import resolve

    return resolve(PlantedReLU(d, n, seed=SEED), codec="fp32", codec_options=None,
                   workers=workers, mode="master", batch_size=workers * batch_per_worker,
                   step_size=None, iterations=1, tol=0.0, init="moment", seed=SEED,
                   downlink_codec=None).step_size


def make_shard(d: int, n: int, k: int, K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shard ``k`` of ``K`` as float32 ``(X, y)`` and its float64 moment sum, made in
    chunks so that the float64 rows never exist all at once."""
    from ray_relu import PlantedReLU
    from ray_relu.shards import shard_bounds

    problem = PlantedReLU(d, n, seed=SEED)
    start, stop = shard_bounds(n, k, K)
    X = np.empty((stop - start, d), dtype=np.float32)
    y = np.empty(stop - start, dtype=np.float32)
    moment = np.zeros(d)
    for lo in range(start, stop, _CHUNK_ROWS):
        hi = min(stop, lo + _CHUNK_ROWS)
        Xc, yc = problem.rows(lo, hi)
        X[lo - start:hi - start], y[lo - start:hi - start] = Xc, yc
        moment += Xc.T @ yc
    return X, y, moment


def _ddp(d: int, w0: Any, hook: str) -> Any:
    """``nn.Linear(d, 1, bias=False)`` set to ``w0``, wrapped in DDP with ``hook``."""
    import torch
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd
    from torch.nn.parallel import DistributedDataParallel

    model = torch.nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(w0.view(1, d))
    ddp = DistributedDataParallel(model)
    if hook == "fp16":
        ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif hook in ("powersgd", "powersgd-forced"):
        rate = 0.0 if hook == "powersgd-forced" else 2.0
        state = psgd.PowerSGDState(process_group=None, matrix_approximation_rank=1,
                                   start_powerSGD_iter=2, min_compression_rate=rate)
        ddp.register_comm_hook(state, psgd.powerSGD_hook)
    elif hook != "fp32":
        raise ValueError(f"hook must be one of {HOOKS}, got {hook!r}")
    return ddp


def train(ddp: Any, X: Any, y: Any, k: int, *, step_size: float, w_star: np.ndarray,
          batch: int, rounds: int, tol: float) -> dict:
    """SGD rounds until ``rel_error <= tol`` or ``rounds`` updates; wall-clock stamps
    after every update (what the caller times and reads the links over)."""
    import torch

    from ray_relu.algorithm import batch_indices

    opt = torch.optim.SGD(ddp.parameters(), lr=step_size)
    weight = ddp.module.weight
    norm = float(np.linalg.norm(w_star))
    stamps: list[float] = []
    t, rel = 0, float("inf")
    while True:
        rel = float(np.linalg.norm(weight.detach().double().numpy().ravel() - w_star)) / norm
        if rel <= tol or t == rounds:
            break
        idx = torch.from_numpy(batch_indices(SEED, t, k, len(y), batch))
        out = torch.relu(ddp(X[idx])).squeeze(1)
        loss = 0.5 * torch.mean((out - y[idx]) ** 2)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        t += 1
        stamps.append(time.time())
    return {"iterations": t, "rel_error": rel, "converged": rel <= tol, "stamps": stamps}


def _window(stamps: list[float], skip: int) -> dict:
    """Round time over the stamps after the first ``skip`` rounds (warm-up)."""
    if len(stamps) <= skip + 1:
        return {"window": None, "window_rounds": 0, "round_s": float("nan")}
    start, stop = stamps[skip], stamps[-1]
    rounds = len(stamps) - 1 - skip
    return {"window": [start, stop], "window_rounds": rounds,
            "round_s": (stop - start) / rounds}


def allreduce_loop(d: int, dtype: str, rounds: int) -> dict:
    """A bare gloo allreduce of d numbers, ``rounds`` times (the wire without DDP)."""
    import torch
    import torch.distributed as dist

    tensor = torch.zeros(d, dtype=getattr(torch, dtype))
    stamps = []
    for _ in range(rounds):
        dist.all_reduce(tensor)
        stamps.append(time.time())
    return _window(stamps, skip=2)


def run_worker(d: int, n: int, *, hooks: list[str], batch: int, rounds: int, tol: float,
               allreduce_rounds: int = 0, threads: int = 1) -> list[dict]:
    """This rank's side of the benchmark (call in an initialized gloo process group).

    For each hook: fresh DDP from the same start, SGD to ``tol`` or ``rounds``; then
    bare allreduce loops in float32 and float16 when ``allreduce_rounds``. Returns one
    row per run (the same on every rank but for the stamps).
    """
    import torch
    import torch.distributed as dist

    from ray_relu import PlantedReLU

    torch.set_num_threads(threads)
    k, K = dist.get_rank(), dist.get_world_size()
    Xn, yn, moment = make_shard(d, n, k, K)
    total = torch.from_numpy(moment)
    dist.all_reduce(total)                         # our moment start, summed over shards
    w0 = (2.0 / n * total).to(torch.float32)
    X, y = torch.from_numpy(Xn), torch.from_numpy(yn)
    w_star = PlantedReLU(d, n, seed=SEED).w_star
    step = fp32_step_size(d, n, K, batch)
    rows = []
    for hook in hooks:
        ddp = _ddp(d, w0, hook)
        out = train(ddp, X, y, k, step_size=step, w_star=w_star, batch=batch,
                    rounds=rounds, tol=tol)
        rows.append({"setting": f"DDP {hook}", "hook": hook, "step_size": step,
                     "host": socket.gethostname(), "rank": k, "workers": K,
                     **{key: out[key] for key in ("iterations", "rel_error", "converged")},
                     **_window(out["stamps"], skip=5)})
    for dtype in ("float32", "float16") if allreduce_rounds else ():
        rows.append({"setting": f"gloo allreduce {dtype}", "hook": None,
                     "host": socket.gethostname(), "rank": k, "workers": K,
                     **allreduce_loop(d, dtype, allreduce_rounds)})
    return rows
